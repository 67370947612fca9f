-- Access review campaigns: one item per member's role, grant, group membership and API
-- token, snapshot when the campaign opens, each decided keep / revoke / change by a
-- reviewer. A closed campaign keeps its evidence (JSON). Times are Unix ms.
CREATE TABLE access_reviews (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- OPEN or CLOSED.
    status TEXT NOT NULL,
    closed_by TEXT,
    closed_at BIGINT,
    evidence TEXT
);

CREATE TABLE access_review_items (
    id TEXT PRIMARY KEY,
    review_id TEXT NOT NULL REFERENCES access_reviews(id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    -- role, grant, group_membership or token.
    kind TEXT NOT NULL,
    -- The person whose access it is (a group's grant: the group's id).
    subject_id TEXT NOT NULL,
    subject_name TEXT NOT NULL,
    reviewer_id TEXT NOT NULL,
    -- The line as it stood (JSON): role, grant, group or token, with its ids.
    detail TEXT NOT NULL,
    -- Space-separated flags (token_older_than_90_days, …).
    flags TEXT NOT NULL,
    -- keep, revoke or change; NULL while undecided.
    decision TEXT,
    note TEXT NOT NULL DEFAULT '',
    decided_by TEXT,
    decided_at BIGINT,
    -- What a change set (JSON), if any.
    changed_to TEXT
);
CREATE INDEX access_review_items_review ON access_review_items (review_id, position);

-- When a grant was last confirmed by a review (its next review is 90 days after this, or
-- after its creation).
ALTER TABLE grants ADD COLUMN reviewed_at BIGINT;
