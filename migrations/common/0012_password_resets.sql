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
    used_at BIGINT,
    -- Wrong authenticator codes sent with it: at the fifth it is spent.
    failures BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX password_resets_user ON password_resets (user_id);
CREATE INDEX password_resets_maker ON password_resets (created_by);
