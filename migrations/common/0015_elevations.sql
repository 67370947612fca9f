-- Just-in-time elevations: temporary access asked for with a reason, approved by someone
-- who holds it, live in its window only. Times are Unix ms.
CREATE TABLE elevations (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL,
    -- 'role', or a grant target: 'source', 'destination', 'source_label'.
    target_kind TEXT NOT NULL,
    target_id TEXT NOT NULL DEFAULT '',
    target_value TEXT NOT NULL DEFAULT '',
    -- The role name (target 'role') or the level's rank.
    wanted TEXT NOT NULL,
    reason TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    -- PENDING, APPROVED, DENIED, CANCELLED or ENDED.
    status TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    comment TEXT NOT NULL DEFAULT '',
    starts_at BIGINT,
    ends_at BIGINT
);
CREATE INDEX elevations_user ON elevations (workspace_id, user_id, status);

-- The longest elevation a workspace approves, in minutes (default 8 hours).
ALTER TABLE workspaces ADD COLUMN elevation_max_minutes BIGINT NOT NULL DEFAULT 480;
