-- The suppression list's epoch: random per store (see 0025_regulations.sql).
UPDATE suppression_head SET epoch = md5(random()::text || clock_timestamp()::text) WHERE id = 1;
