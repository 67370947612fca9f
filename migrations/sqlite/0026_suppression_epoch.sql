-- The suppression list's epoch: random per store (see 0025_regulations.sql).
UPDATE suppression_head SET epoch = lower(hex(randomblob(16))) WHERE id = 1;
