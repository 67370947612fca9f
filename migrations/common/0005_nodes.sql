-- Node credentials: what a remote gateway or delivery node presents to fetch the catalog
-- (`slc_node_…`, stored as SHA-256). A credential of its own kind, never a person's
-- token; only delivery nodes receive destination credentials.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
