-- The failed runs of functions that remote nodes report (a gateway's source functions,
-- a delivery node's insert functions): the newest 50 per function are kept. `id` is the
-- node's, so a report resent after a lost answer stores nothing twice.
CREATE TABLE function_errors (
    workspace_id TEXT NOT NULL,
    id TEXT NOT NULL,
    function_id TEXT NOT NULL,
    node TEXT NOT NULL,
    at BIGINT NOT NULL,
    message_id TEXT,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX function_errors_function ON function_errors (workspace_id, function_id, at);
