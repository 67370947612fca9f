-- Who owns a tracking plan (its creator; offboarding hands it to a successor). Plans
-- imported from a catalog file have none.
ALTER TABLE tracking_plans ADD COLUMN owner_id TEXT;

-- Removal records: one per offboarding carried out, with the report of everything it
-- transferred, revoked and listed. Times are Unix ms.
CREATE TABLE offboardings (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    successor_id TEXT NOT NULL,
    performed_by TEXT NOT NULL,
    performed_at BIGINT NOT NULL,
    report TEXT NOT NULL,
    -- When the write keys listed "rotate if shared" were rotated, and by whom.
    keys_rotated_at BIGINT,
    keys_rotated_by TEXT
);
CREATE INDEX offboardings_user ON offboardings (workspace_id, user_id);
