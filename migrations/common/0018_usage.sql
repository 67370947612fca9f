-- Usage and quotas. Gateways report what they counted once a second; each report adds to
-- its sources' row of the day (UTC, by the control plane's clock). A report is booked
-- once: `usage_reports` keeps the last sequence number booked per gateway process.
CREATE TABLE usage_days (
    workspace_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    day TEXT NOT NULL,
    accepted BIGINT NOT NULL DEFAULT 0,
    refused BIGINT NOT NULL DEFAULT 0,
    violating BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, source_id, day)
);
CREATE INDEX usage_days_day ON usage_days (day);
CREATE TABLE usage_reports (
    instance TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL
);
-- Monthly event quotas (NULL: none). Changing one changes the catalog (triggers).
ALTER TABLE workspaces ADD COLUMN monthly_event_quota BIGINT;
ALTER TABLE sources ADD COLUMN monthly_event_quota BIGINT;
