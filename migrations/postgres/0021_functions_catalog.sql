-- Functions' tables feed the catalog (PostgreSQL); see 0004_catalog_dirty.sql.
CREATE TRIGGER functions_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON functions
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER function_instances_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON function_instances
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER source_functions_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON source_functions
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
