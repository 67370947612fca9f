-- Regulations: requests about the events of named users (Segment's Deletion &
-- Suppression API), for a whole workspace (`source_id` '') or for one source.
CREATE TABLE regulations (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    regulation_type TEXT NOT NULL,
    subject_type TEXT NOT NULL,
    subjects TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX regulations_source ON regulations (workspace_id, source_id, id);

-- Who is suppressed, per workspace or source (`source_id` ''). A lifted suppression stays
-- as a row with `suppressed` 0, so a gateway that follows `seq` learns of the lift too.
-- `seq` is unique and grows with every row written: changes commit one at a time (each
-- holds the audit chain's head row), so a reader that saw `seq` N never later finds a
-- row below N it has not seen.
CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    regulation_id TEXT NOT NULL,
    suppressed BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, source_id, subject)
);
CREATE UNIQUE INDEX suppressions_seq ON suppressions (seq);
CREATE INDEX suppressions_source ON suppressions (source_id, suppressed);

-- The last `seq` given to a suppression row, and the list's `epoch`: random, set once
-- per store (0026), so a gateway that followed another store's list (a store replaced by
-- a new one) starts over instead of mixing the two.
CREATE TABLE suppression_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    epoch TEXT NOT NULL
);
INSERT INTO suppression_head (id, seq, epoch) VALUES (1, 0, '');
