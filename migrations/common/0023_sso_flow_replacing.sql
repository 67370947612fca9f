-- The session a browser held when it started signing in through a provider (the digest
-- of its cookie, '' for none): it ends when the new session opens. The provider's answer
-- comes back cross-site, without that cookie, so the flow remembers it.
ALTER TABLE sso_flows ADD COLUMN replacing TEXT NOT NULL DEFAULT '';
