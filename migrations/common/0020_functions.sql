-- Functions: JavaScript run on events. An insert function runs before a destination's
-- send; a source function turns webhooks into events. Times are Unix ms.
CREATE TABLE functions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    -- INSERT_DESTINATION or SOURCE.
    resource_type TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    logo_url TEXT NOT NULL DEFAULT '',
    -- The settings it declares (JSON array of {name, label, description, type, required, sensitive}).
    settings TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- The version that runs on events, once one is deployed.
    deployed_version BIGINT,
    deployed_at BIGINT,
    UNIQUE (workspace_id, display_name)
);

-- Every version of a function's code, never changed once written.
CREATE TABLE function_versions (
    function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    code TEXT NOT NULL,
    author_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (function_id, version)
);

-- An insert function attached to a destination (one per destination), with its settings'
-- values sealed with the store's key (sensitive ones are secrets).
CREATE TABLE function_instances (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    function_id TEXT NOT NULL REFERENCES functions(id),
    destination_id TEXT NOT NULL UNIQUE REFERENCES destinations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    enabled BIGINT NOT NULL,
    sealed_settings TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX function_instances_function ON function_instances (function_id);

-- A source function on a source (one per source): its webhook endpoint's id, settings'
-- values (sealed) and the SHA-256 of the endpoint's secret (shown once).
CREATE TABLE source_functions (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    function_id TEXT NOT NULL REFERENCES functions(id),
    source_id TEXT NOT NULL UNIQUE REFERENCES sources(id) ON DELETE CASCADE,
    enabled BIGINT NOT NULL,
    sealed_settings TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX source_functions_function ON source_functions (function_id);
