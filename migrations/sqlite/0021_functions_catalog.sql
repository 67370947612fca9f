-- Functions' tables feed the catalog (SQLite); see 0004_catalog_dirty.sql.
CREATE TRIGGER functions_catalog_insert AFTER INSERT ON functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER functions_catalog_update AFTER UPDATE ON functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER functions_catalog_delete AFTER DELETE ON functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER function_instances_catalog_insert AFTER INSERT ON function_instances
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER function_instances_catalog_update AFTER UPDATE ON function_instances
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER function_instances_catalog_delete AFTER DELETE ON function_instances
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER source_functions_catalog_insert AFTER INSERT ON source_functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER source_functions_catalog_update AFTER UPDATE ON source_functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
CREATE TRIGGER source_functions_catalog_delete AFTER DELETE ON source_functions
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; END;
