-- The catalog's revision: the change revision (audit seq) of the last change that touched
-- what gateways and delivery nodes are fed (workspaces, sources, write keys, destinations,
-- connections, tracking plans). Triggers on those tables mark the row dirty; the commit
-- that dirtied it moves `seq` to its own revision. Changes that touch none of them (a
-- refused attempt's audit event, a token, a grant) leave the catalog's revision alone, so
-- they cost no export and wake no gateway.
CREATE TABLE catalog_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    dirty BIGINT NOT NULL DEFAULT 0
);
INSERT INTO catalog_head (id, seq, dirty) SELECT 1, seq, 0 FROM audit_head WHERE id = 1;
