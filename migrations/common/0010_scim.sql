-- SCIM 2.0 provisioning (RFC 7643/7644) at /scim/v2.
--
-- A workspace's identity provider holds SCIM tokens of its own: not a person's token,
-- made by an admin, stored as SHA-256 only. Times are Unix ms.
CREATE TABLE scim_tokens (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX scim_tokens_workspace ON scim_tokens(workspace_id);

-- What the identity provider calls a member besides their email: the SCIM userName
-- (`user_key` is it lower-cased, unique per workspace), its externalId, and the
-- attributes Sluice keeps for it but does not act on (JSON object).
CREATE TABLE scim_users (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    user_name TEXT NOT NULL,
    user_key TEXT NOT NULL,
    external_id TEXT,
    attrs TEXT NOT NULL DEFAULT '{}',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, user_id),
    UNIQUE (workspace_id, user_key)
);

-- A group's externalId and last change, as the identity provider set them, and what it
-- said of each member besides the id (JSON object: user id -> {"type": …, "$ref": …}).
CREATE TABLE scim_groups (
    group_id TEXT PRIMARY KEY REFERENCES user_groups(id) ON DELETE CASCADE,
    external_id TEXT,
    members TEXT NOT NULL DEFAULT '{}',
    updated_at BIGINT NOT NULL
);

-- Identity-provider group name -> the workspace role its members get at least
-- (e.g. segment-admins -> admin). Applied to the Sluice group of that name whenever
-- either changes.
CREATE TABLE idp_group_mappings (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id),
    idp_group TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, idp_group)
);

-- A member deactivated in one workspace (SCIM `active: false`) keeps their row there,
-- with nothing: no tokens, sessions, grants or groups, role read_only.
ALTER TABLE memberships ADD COLUMN deactivated_at BIGINT;
