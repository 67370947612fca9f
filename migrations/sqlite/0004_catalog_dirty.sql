-- Changes to the catalog's tables mark its revision dirty (SQLite); see 0003_catalog_head.sql.
CREATE TRIGGER workspaces_catalog_insert AFTER INSERT ON workspaces
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER workspaces_catalog_update AFTER UPDATE ON workspaces
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER workspaces_catalog_delete AFTER DELETE ON workspaces
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plans_catalog_insert AFTER INSERT ON tracking_plans
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plans_catalog_update AFTER UPDATE ON tracking_plans
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plans_catalog_delete AFTER DELETE ON tracking_plans
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plan_versions_catalog_insert AFTER INSERT ON tracking_plan_versions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plan_versions_catalog_update AFTER UPDATE ON tracking_plan_versions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER tracking_plan_versions_catalog_delete AFTER DELETE ON tracking_plan_versions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER sources_catalog_insert AFTER INSERT ON sources
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER sources_catalog_update AFTER UPDATE ON sources
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER sources_catalog_delete AFTER DELETE ON sources
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER write_keys_catalog_insert AFTER INSERT ON write_keys
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER write_keys_catalog_update AFTER UPDATE ON write_keys
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER write_keys_catalog_delete AFTER DELETE ON write_keys
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER destinations_catalog_insert AFTER INSERT ON destinations
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER destinations_catalog_update AFTER UPDATE ON destinations
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER destinations_catalog_delete AFTER DELETE ON destinations
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER connections_catalog_insert AFTER INSERT ON connections
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER connections_catalog_update AFTER UPDATE ON connections
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER connections_catalog_delete AFTER DELETE ON connections
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
