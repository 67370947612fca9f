//! SCIM provisioning's own rows: the identity provider's tokens, what it calls each
//! member and group (userName, externalId, the attributes it sent), and the mapping of
//! its group names to workspace roles.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::tokens::IssueError;
use super::{StoreError, ms, new_id, opt_time, time};
use crate::control::policy::Role;
use crate::control::token;

/// A SCIM token's row (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenRow {
    /// Id (`sct_…`).
    pub id: String,
    /// The workspace it provisions.
    #[serde(skip)]
    pub workspace_id: String,
    /// Name given by its maker (e.g. `okta`).
    pub name: String,
    /// The prefix and first characters, for people to recognise it.
    pub display: String,
    /// Who made it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
}

const TOKEN_COLUMNS: &str =
    "id, workspace_id, name, display, created_by, created_at, revoked_at, last_used_at";

fn decode_token(row: &sqlx::any::AnyRow) -> Result<ScimTokenRow, StoreError> {
    Ok(ScimTokenRow {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        name: row.try_get(2)?,
        display: row.try_get(3)?,
        created_by: row.try_get(4)?,
        created_at: time(row.try_get(5)?)?,
        revoked_at: opt_time(row.try_get(6)?)?,
        last_used_at: opt_time(row.try_get(7)?)?,
    })
}

/// Makes a SCIM token for `workspace`: its row and its plaintext (shown once).
pub async fn issue_token(
    conn: &mut AnyConnection,
    workspace: &str,
    name: &str,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<(ScimTokenRow, token::Plaintext), IssueError> {
    let issued = token::issue_scim()?;
    let row = ScimTokenRow {
        id: new_id("sct_"),
        workspace_id: workspace.to_owned(),
        name: name.to_owned(),
        display: issued.display.clone(),
        created_by: created_by.to_owned(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    sqlx::query(
        "INSERT INTO scim_tokens (id, workspace_id, name, digest, display, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(name)
    .bind(issued.digest.to_hex())
    .bind(&row.display)
    .bind(created_by)
    .bind(ms(now))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as("scim token"))?;
    Ok((row, issued.plaintext))
}

/// The SCIM token with this digest (hex), whatever its state.
pub async fn token_by_digest(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<ScimTokenRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE digest = $1"
    ))
    .bind(digest)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode_token).transpose()
}

/// The SCIM tokens of `workspace`, oldest first.
pub async fn tokens(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<ScimTokenRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {TOKEN_COLUMNS} FROM scim_tokens WHERE workspace_id = $1 ORDER BY created_at, id"
    ))
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_token).collect()
}

/// Revokes a SCIM token of `workspace`; whether one was live.
pub async fn revoke_token(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE scim_tokens SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a SCIM token's use.
pub async fn touch_token(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE scim_tokens SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// What the identity provider calls a member.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimUser {
    /// `userName` as sent.
    pub user_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// The rest of what it sent, kept and given back (a JSON object).
    pub attrs: serde_json::Value,
    /// Last change by the identity provider.
    pub updated_at: DateTime<Utc>,
}

fn decode_user(row: &sqlx::any::AnyRow) -> Result<(String, ScimUser), StoreError> {
    let attrs: String = row.try_get(3)?;
    Ok((
        row.try_get(0)?,
        ScimUser {
            user_name: row.try_get(1)?,
            external_id: row.try_get(2)?,
            attrs: serde_json::from_str(&attrs)
                .map_err(|e| StoreError::Corrupt(format!("scim user attributes: {e}")))?,
            updated_at: time(row.try_get(4)?)?,
        },
    ))
}

/// The SCIM names of `workspace`'s members, by user id.
pub async fn users(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<HashMap<String, ScimUser>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id, user_name, external_id, attrs, updated_at FROM scim_users WHERE workspace_id = $1",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode_user).collect()
}

/// The SCIM name of one member.
pub async fn user(
    conn: &mut AnyConnection,
    workspace: &str,
    user_id: &str,
) -> Result<Option<ScimUser>, StoreError> {
    let row = sqlx::query(
        "SELECT user_id, user_name, external_id, attrs, updated_at FROM scim_users WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.as_ref().map(decode_user).transpose()?.map(|(_, u)| u))
}

/// Records what the identity provider calls a member (replacing what it said before).
pub async fn put_user(
    conn: &mut AnyConnection,
    workspace: &str,
    user_id: &str,
    user: &ScimUser,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM scim_users WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO scim_users (workspace_id, user_id, user_name, user_key, external_id, attrs, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(workspace)
    .bind(user_id)
    .bind(&user.user_name)
    .bind(user.user_name.to_lowercase())
    .bind(&user.external_id)
    .bind(user.attrs.to_string())
    .bind(ms(user.updated_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("userName {}", user.user_name)))?;
    Ok(())
}

/// The members of `workspace` other than `except` who go by `user_name` (ignoring
/// case): their SCIM userName, or their email when SCIM never named them.
pub async fn users_named(
    conn: &mut AnyConnection,
    workspace: &str,
    user_name: &str,
    except: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let key = user_name.to_lowercase();
    let rows = sqlx::query(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
           LEFT JOIN scim_users s ON s.workspace_id = m.workspace_id AND s.user_id = m.user_id
          WHERE m.workspace_id = $1 AND m.user_id <> $3
            AND ((s.user_key IS NOT NULL AND s.user_key = $2) OR (s.user_key IS NULL AND u.email = $2))
          ORDER BY m.user_id",
    )
    .bind(workspace)
    .bind(&key)
    .bind(except.unwrap_or_default())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Forgets what the identity provider called a user, in every workspace (they are gone).
pub async fn drop_user(conn: &mut AnyConnection, user_id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM scim_users WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether a user row holds `email` and is still someone: active, or a member somewhere
/// (a removed person's row is taken over by [`super::users::create`]).
pub async fn email_taken(conn: &mut AnyConnection, email: &str) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 FROM users u WHERE u.email = $1
           AND (u.active = 1 OR EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id))",
    )
    .bind(email.trim().to_lowercase())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// A group's externalId and last change, as the identity provider set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// `externalId`.
    pub external_id: Option<String>,
    /// What it said of each member besides the id (`type`, `$ref`), by user id.
    pub members: serde_json::Map<String, serde_json::Value>,
    /// Last change by the identity provider.
    pub updated_at: DateTime<Utc>,
}

/// The SCIM side of `workspace`'s groups, by group id.
pub async fn groups(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<HashMap<String, ScimGroup>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.group_id, s.external_id, s.updated_at, s.members FROM scim_groups s
           JOIN user_groups g ON g.id = s.group_id WHERE g.workspace_id = $1",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let members: String = row.try_get(3)?;
            let members = match serde_json::from_str(&members) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => return Err(StoreError::Corrupt("scim group members".into())),
            };
            Ok((
                row.try_get(0)?,
                ScimGroup {
                    external_id: row.try_get(1)?,
                    members,
                    updated_at: time(row.try_get(2)?)?,
                },
            ))
        })
        .collect()
}

/// Records a group's externalId (replacing what was said before).
pub async fn put_group(
    conn: &mut AnyConnection,
    group_id: &str,
    group: &ScimGroup,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM scim_groups WHERE group_id = $1")
        .bind(group_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO scim_groups (group_id, external_id, members, updated_at) VALUES ($1, $2, $3, $4)",
    )
        .bind(group_id)
        .bind(&group.external_id)
        .bind(serde_json::Value::Object(group.members.clone()).to_string())
        .bind(ms(group.updated_at))
        .execute(conn)
        .await?;
    Ok(())
}

/// One identity-provider group name mapped to a workspace role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The group's name at the identity provider (its SCIM `displayName`, or a value of
    /// the SSO groups attribute).
    pub idp_group: String,
    /// The workspace role its members get at least.
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `workspace`'s group mappings, by name.
pub async fn mappings(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<Mapping>, StoreError> {
    let rows = sqlx::query(
        "SELECT idp_group, role, created_at FROM idp_group_mappings WHERE workspace_id = $1 ORDER BY idp_group",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get(1)?;
            Ok(Mapping {
                idp_group: row.try_get(0)?,
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("mapping role {role}")))?,
                created_at: time(row.try_get(2)?)?,
            })
        })
        .collect()
}

/// The role an identity-provider group name maps to, if any.
pub async fn mapped_role(
    conn: &mut AnyConnection,
    workspace: &str,
    idp_group: &str,
) -> Result<Option<Role>, StoreError> {
    Ok(mappings(conn, workspace)
        .await?
        .into_iter()
        .find(|m| m.idp_group == idp_group)
        .map(|m| m.role))
}

/// Maps `idp_group` to `role` (replacing an earlier mapping of it).
pub async fn set_mapping(
    conn: &mut AnyConnection,
    workspace: &str,
    idp_group: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<Mapping, StoreError> {
    delete_mapping(conn, workspace, idp_group).await?;
    sqlx::query(
        "INSERT INTO idp_group_mappings (workspace_id, idp_group, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(workspace)
    .bind(idp_group)
    .bind(role.name())
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(Mapping {
        idp_group: idp_group.to_owned(),
        role,
        created_at: now,
    })
}

/// Removes the mapping of `idp_group`; whether there was one.
pub async fn delete_mapping(
    conn: &mut AnyConnection,
    workspace: &str,
    idp_group: &str,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("DELETE FROM idp_group_mappings WHERE workspace_id = $1 AND idp_group = $2")
            .bind(workspace)
            .bind(idp_group)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}
