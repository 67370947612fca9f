-- Browser sessions. The cookie carries a random secret; only its SHA-256 (`digest`) is
-- stored. `csrf` is the synchronizer token a session-authenticated change must echo.
-- Times are Unix ms. A session ends at the first of its idle and absolute expiry, or when
-- revoked (logout, or its user's access taken away).
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    method TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions(user_id);

-- Local sign-in: an argon2id hash (PHC string) per user.
CREATE TABLE passwords (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    phc TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
