-- Control-plane schema, version 1. Times are Unix milliseconds (BIGINT), flags are
-- 0/1 BIGINT and levels are ranks (0 no_access, 1 read_only, 2 read_write, 3 full), so
-- the same SQL and the same row decoding serve SQLite and PostgreSQL.

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    members_can_publish BIGINT NOT NULL DEFAULT 0,
    token_max_days BIGINT NOT NULL DEFAULT 365,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    active BIGINT NOT NULL DEFAULT 1,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_login BIGINT
);

CREATE TABLE memberships (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);

CREATE TABLE invites (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, email)
);

CREATE TABLE user_groups (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    role TEXT,
    origin TEXT NOT NULL DEFAULT 'local',
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id),
    PRIMARY KEY (group_id, user_id)
);

CREATE TABLE labels (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    label_key TEXT NOT NULL,
    label_value TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, label_key, label_value)
);

CREATE TABLE tracking_plans (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    plan_type TEXT NOT NULL DEFAULT 'LIVE',
    rules TEXT NOT NULL DEFAULT '[]',
    published_version BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Immutable: a publish inserts a row, nothing updates one.
CREATE TABLE tracking_plan_versions (
    plan_id TEXT NOT NULL REFERENCES tracking_plans(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    rules TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    PRIMARY KEY (plan_id, version)
);

CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    metadata_id TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    rate_per_second BIGINT,
    rate_burst BIGINT,
    tracking_plan_id TEXT REFERENCES tracking_plans(id) ON DELETE SET NULL,
    enforcement TEXT NOT NULL DEFAULT 'off',
    controls TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sources_workspace ON sources (workspace_id, id);

CREATE TABLE source_labels (
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    label_key TEXT NOT NULL,
    label_value TEXT NOT NULL,
    PRIMARY KEY (source_id, label_key, label_value)
);

CREATE TABLE write_keys (
    id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    digest TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX write_keys_source ON write_keys (source_id);

CREATE TABLE destinations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    metadata_id TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    -- The catalog's destination document (type, settings, filter, retry, …), sealed
    -- with the workspace secret key: settings carry credentials.
    sealed_doc TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX destinations_workspace ON destinations (workspace_id, id);

CREATE TABLE connections (
    destination_id TEXT NOT NULL REFERENCES destinations(id) ON DELETE CASCADE,
    source_id TEXT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    PRIMARY KEY (destination_id, source_id)
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_value TEXT NOT NULL DEFAULT '',
    level BIGINT NOT NULL,
    justification TEXT NOT NULL DEFAULT '',
    approved_by TEXT NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (principal_kind, principal_id, target_kind, target_id, target_value)
);
CREATE INDEX grants_principal ON grants (principal_kind, principal_id);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT
);

-- One-time links: the first owner's setup link and invites' acceptance.
CREATE TABLE setup_links (
    digest TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    role TEXT NOT NULL,
    -- An invite's link is for this email only; the setup link takes any.
    email TEXT NOT NULL DEFAULT '',
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

-- Append-only, hash-chained. `body` is the event's canonical JSON (what the hash covers).
CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    time BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);

-- The chain's head: its last seq and hash. Every change takes this row first, so
-- writers queue on it (one chain, no gaps) and a deleted tail shows.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Gateways fed over the network, with the catalog revision each applied last.
CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    seen_at BIGINT NOT NULL
);
