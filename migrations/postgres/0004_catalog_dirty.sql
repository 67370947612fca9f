-- Changes to the catalog's tables mark its revision dirty (PostgreSQL); see 0003_catalog_head.sql.
CREATE FUNCTION catalog_dirty() RETURNS trigger AS $$
BEGIN UPDATE catalog_head SET dirty = 1 WHERE id = 1; RETURN NULL; END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER workspaces_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON workspaces
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER tracking_plans_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON tracking_plans
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER tracking_plan_versions_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON tracking_plan_versions
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER sources_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON sources
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER write_keys_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON write_keys
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER destinations_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON destinations
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
CREATE TRIGGER connections_catalog_dirty AFTER INSERT OR UPDATE OR DELETE ON connections
FOR EACH STATEMENT EXECUTE FUNCTION catalog_dirty();
