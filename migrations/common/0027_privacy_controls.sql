-- Privacy controls of sources and destinations, each changed by its own statement. `without_consent`: what a source's events that carry no
-- consent preferences do at destinations with consent categories ('deliver' or
-- 'withhold'; a destination's categories are in its sealed document). `pii_rules`: the
-- paths its events have dropped, hashed or masked before they are stored (JSON).
ALTER TABLE sources ADD COLUMN without_consent TEXT NOT NULL DEFAULT 'deliver';
ALTER TABLE sources ADD COLUMN pii_rules TEXT NOT NULL DEFAULT '[]';
-- A destination's consent categories (JSON), apart from its sealed document so that
-- neither edit overwrites the other.
ALTER TABLE destinations ADD COLUMN consent_categories TEXT NOT NULL DEFAULT '[]';
-- The salt of a workspace's `hash` rules, sealed; made when first needed.
ALTER TABLE workspaces ADD COLUMN pii_salt TEXT;
