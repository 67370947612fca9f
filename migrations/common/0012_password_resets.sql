-- One-time password reset links an admin hands to a member (Sluice sends no mail): the
-- link's SHA-256, whose password it sets, who made it. Used once, then it opens a
-- session. Times are Unix ms.
CREATE TABLE password_resets (
    digest TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX password_resets_user ON password_resets (user_id);
