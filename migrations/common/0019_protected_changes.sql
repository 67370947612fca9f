-- Production protection: labels whose sources (and the destinations connected to them)
-- are changed by owners and admins at once and by everyone else through review.
ALTER TABLE workspaces ADD COLUMN protected_labels TEXT NOT NULL DEFAULT '[]';

-- A change to a protected source or destination waiting for review: the API request as
-- its author made it, replayed as the approver's when approved. Times are Unix ms.
CREATE TABLE resource_changes (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    -- `source` or `destination`, and its id.
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    -- The protected sources that made it a request (JSON array of ids).
    protected_sources TEXT NOT NULL,
    author_id TEXT NOT NULL,
    description TEXT NOT NULL,
    method TEXT NOT NULL,
    -- As shown: a write key in it hidden.
    path TEXT NOT NULL,
    -- The call as made (path and body), sealed with the store's key.
    body TEXT NOT NULL,
    -- The resource as it was when proposed (JSON): approval refuses if it changed since.
    before_state TEXT NOT NULL,
    -- OPEN, APPLYING, APPLIED, REJECTED or WITHDRAWN.
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    decision_comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX resource_changes_queue ON resource_changes (workspace_id, status, id);
