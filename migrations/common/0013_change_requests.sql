-- Tracking-plan change requests: a proposed set of rules, the published version it
-- starts from, and how it was decided. Times are Unix ms.
CREATE TABLE change_requests (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    plan_id TEXT NOT NULL REFERENCES tracking_plans(id) ON DELETE CASCADE,
    author_id TEXT NOT NULL,
    description TEXT NOT NULL,
    -- The published version the proposal was made from (0: the plan was never published).
    base_version BIGINT NOT NULL,
    -- The proposed rules, whole (JSON), as the plan would hold them.
    rules TEXT NOT NULL,
    -- OPEN, PUBLISHED, REJECTED or WITHDRAWN.
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    decision_comment TEXT NOT NULL DEFAULT '',
    -- The plan version an approval published.
    published_version BIGINT
);
CREATE INDEX change_requests_queue ON change_requests (workspace_id, status, id);
CREATE INDEX change_requests_plan ON change_requests (plan_id, status);

-- Whether a reviewer may approve their own change request.
ALTER TABLE workspaces ADD COLUMN self_approval BIGINT NOT NULL DEFAULT 0;
