-- The last hours of usage a minute at a time, for the console's live numbers: each
-- booked report also adds to its sources' row of the minute (UTC epoch minutes, by the
-- control plane's clock). Rows older than two hours are dropped as reports are booked.
CREATE TABLE usage_minutes (
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    accepted BIGINT NOT NULL DEFAULT 0,
    refused BIGINT NOT NULL DEFAULT 0,
    violating BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, source_id, minute)
);
CREATE INDEX usage_minutes_minute ON usage_minutes (minute);
