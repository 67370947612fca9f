-- Sign-in policy, TOTP and single sign-on (OpenID Connect, SAML 2.0). Times are Unix ms.

-- How long a session lives (unused, and at most), and whether people of the workspace
-- must sign in through its identity provider (break-glass owners excepted).
ALTER TABLE workspaces ADD COLUMN session_idle_minutes BIGINT NOT NULL DEFAULT 720;
ALTER TABLE workspaces ADD COLUMN session_absolute_hours BIGINT NOT NULL DEFAULT 168;
ALTER TABLE workspaces ADD COLUMN require_sso BIGINT NOT NULL DEFAULT 0;
-- An owner who may still sign in with a password when `require_sso` is on.
ALTER TABLE memberships ADD COLUMN break_glass BIGINT NOT NULL DEFAULT 0;

-- A local account's authenticator app (RFC 6238): the shared secret sealed with the
-- control plane's key, confirmed once a first code matched, and the last time step
-- used (a code is good once).
CREATE TABLE totp (
    user_id TEXT PRIMARY KEY REFERENCES users(id),
    secret TEXT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- One-time recovery codes for when the authenticator is lost (SHA-256 only).
CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users(id),
    digest TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, digest)
);

-- A workspace's identity provider: `kind` oidc or saml; `settings` its public
-- settings (JSON); `secret` the OIDC client secret, sealed ('' when none).
CREATE TABLE sso_connections (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1,
    default_role TEXT NOT NULL,
    settings TEXT NOT NULL,
    secret TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sso_connections_workspace ON sso_connections(workspace_id);

-- A sign-in under way at an identity provider: the digest of its OIDC `state` (or the
-- SAML request id), the browser it started in (digest of a cookie), the OIDC nonce and
-- sealed PKCE verifier, where to go after, whether it only tests the connection, and
-- what a test saw. Used once.
CREATE TABLE sso_flows (
    id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES sso_connections(id) ON DELETE CASCADE,
    browser TEXT NOT NULL DEFAULT '',
    nonce TEXT NOT NULL DEFAULT '',
    verifier TEXT NOT NULL DEFAULT '',
    return_to TEXT NOT NULL DEFAULT '/',
    test BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    consumed_at BIGINT,
    result TEXT
);
CREATE INDEX sso_flows_expiry ON sso_flows(expires_at);

-- Who a person is at an identity provider (OIDC `sub`, SAML NameID): the link that
-- survives an email change.
CREATE TABLE external_identities (
    connection_id TEXT NOT NULL REFERENCES sso_connections(id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, subject)
);

-- SAML assertion ids already used, kept until they expire: a replay is refused.
CREATE TABLE saml_replay (
    connection_id TEXT NOT NULL REFERENCES sso_connections(id) ON DELETE CASCADE,
    assertion_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, assertion_id)
);
