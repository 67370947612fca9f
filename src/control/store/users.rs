//! Users and their workspace memberships; loading a user as the policy sees them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::grants::{self, Holder};
use super::groups;
use super::{StoreError, ms, new_id, opt_time, time};
use crate::control::policy::{self, Role};

/// A user with their role in one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Email, lower-cased (unique).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Deactivated users may do nothing.
    pub active: bool,
    /// How they came: `bootstrap`, `setup`, `invite`, `scim`, `sso`.
    pub origin: String,
    /// Their own role in the workspace.
    pub role: Role,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last login (console or SSO).
    pub last_login: Option<DateTime<Utc>>,
    /// Reaches only what grants give (see [`policy::User::scoped`]).
    pub scoped: bool,
}

const SELECT: &str = "SELECT u.id, u.email, u.first_name, u.last_name,
        CASE WHEN m.deactivated_at IS NULL THEN u.active ELSE 0 END,
        u.origin, m.role, u.created_at, u.last_login, m.scoped
     FROM users u JOIN memberships m ON m.user_id = u.id";

fn decode(row: &sqlx::any::AnyRow) -> Result<UserRow, StoreError> {
    let role: String = row.try_get(6)?;
    Ok(UserRow {
        id: row.try_get(0)?,
        email: row.try_get(1)?,
        first_name: row.try_get(2)?,
        last_name: row.try_get(3)?,
        active: row.try_get::<i64, _>(4)? != 0,
        origin: row.try_get(5)?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        created_at: time(row.try_get(7)?)?,
        last_login: opt_time(row.try_get(8)?)?,
        scoped: row.try_get::<i64, _>(9)? != 0,
    })
}

/// What a new user says.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// Email (stored lower-cased).
    pub email: &'a str,
    /// First name.
    pub first_name: &'a str,
    /// Last name.
    pub last_name: &'a str,
    /// Role in the workspace.
    pub role: Role,
    /// How they came.
    pub origin: &'a str,
}

/// Creates a user and makes them a member of `workspace`.
pub async fn create(
    conn: &mut AnyConnection,
    workspace: &str,
    new: NewUser<'_>,
    now: DateTime<Utc>,
) -> Result<UserRow, StoreError> {
    let email = new.email.trim().to_lowercase();
    // Someone removed earlier (deactivated, member nowhere) comes back under their old
    // id: their tokens were revoked and their grants dropped when they were removed.
    let former = sqlx::query(
        "SELECT u.id FROM users u WHERE u.email = $1 AND u.active = 0
           AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id)",
    )
    .bind(&email)
    .fetch_optional(&mut *conn)
    .await?;
    let id = match former {
        Some(row) => {
            let id: String = row.try_get(0)?;
            sqlx::query(
                "UPDATE users SET first_name = $2, last_name = $3, active = 1, origin = $4, created_at = $5, last_login = NULL WHERE id = $1",
            )
            .bind(&id)
            .bind(new.first_name)
            .bind(new.last_name)
            .bind(new.origin)
            .bind(ms(now))
            .execute(&mut *conn)
            .await?;
            id
        }
        None => {
            let id = new_id("usr_");
            sqlx::query(
                "INSERT INTO users (id, email, first_name, last_name, active, origin, created_at) VALUES ($1, $2, $3, $4, 1, $5, $6)",
            )
            .bind(&id)
            .bind(&email)
            .bind(new.first_name)
            .bind(new.last_name)
            .bind(new.origin)
            .bind(ms(now))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::conflict_as(format!("user {email}")))?;
            id
        }
    };
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(workspace)
    .bind(&id)
    .bind(new.role.name())
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    if new.role == Role::Owner {
        super::invites::kill_setup_links(conn, workspace).await?;
    }
    Ok(UserRow {
        id,
        email,
        first_name: new.first_name.to_owned(),
        last_name: new.last_name.to_owned(),
        active: true,
        origin: new.origin.to_owned(),
        role: new.role,
        created_at: now,
        last_login: None,
        scoped: false,
    })
}

/// A member of `workspace` by id (`None` for users of other workspaces).
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(sql!("{SELECT} WHERE m.workspace_id = $1 AND u.id = $2"))
        .bind(workspace)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// A member of `workspace` by email (case-insensitive).
pub async fn by_email(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
) -> Result<Option<UserRow>, StoreError> {
    let row = sqlx::query(sql!("{SELECT} WHERE m.workspace_id = $1 AND u.email = $2"))
        .bind(workspace)
        .bind(email.trim().to_lowercase())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Every member of `workspace`, by id.
pub async fn all(conn: &mut AnyConnection, workspace: &str) -> Result<Vec<UserRow>, StoreError> {
    let rows = sqlx::query(sql!("{SELECT} WHERE m.workspace_id = $1 ORDER BY u.id"))
        .bind(workspace)
        .fetch_all(conn)
        .await?;
    rows.iter().map(decode).collect()
}

/// Members of `workspace` by id, after the cursor id, at most `limit`.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<UserRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "{SELECT} WHERE m.workspace_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Number of owners in `workspace` (the last one cannot be demoted or removed).
pub async fn owner_count(conn: &mut AnyConnection, workspace: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.workspace_id = $1 AND m.role = 'owner' AND u.active = 1 AND m.deactivated_at IS NULL",
    )
    .bind(workspace)
    .fetch_one(conn)
    .await?
    .try_get(0)?)
}

/// Changes a member's role.
pub async fn set_role(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    role: Role,
) -> Result<(), StoreError> {
    // Break-glass is an owner's standing: a member who is no longer one loses it.
    sqlx::query(
        "UPDATE memberships SET role = $3, break_glass = CASE WHEN $3 = 'owner' THEN break_glass ELSE 0 END WHERE workspace_id = $1 AND user_id = $2",
    )
        .bind(workspace)
        .bind(id)
        .bind(role.name())
        .execute(&mut *conn)
        .await?;
    if role == Role::Owner {
        super::invites::kill_setup_links(conn, workspace).await?;
    }
    Ok(())
}

/// Makes a member scoped (reaching only what grants give) or not.
pub async fn set_scoped(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    scoped: bool,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE memberships SET scoped = $3 WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace)
        .bind(id)
        .bind(i64::from(scoped))
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a member from `workspace` and deactivates the user: their tokens, sessions and the node
/// credentials they made are revoked and their own grants dropped, so nothing of theirs
/// comes back if they are invited again.
pub async fn remove(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET active = 0 WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    // Their browser sessions end with their tokens, and their password goes: whoever is
    // invited later with this email sets their own.
    super::sessions::revoke_others(&mut *conn, id, None, now).await?;
    forget_credentials(&mut *conn, id).await?;
    super::resets::end_for(&mut *conn, id, now).await?;
    sqlx::query("DELETE FROM external_identities WHERE user_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    // SCIM tokens they made go with them: an owner who leaves keeps no way back in.
    sqlx::query(
        "UPDATE scim_tokens SET revoked_at = $2 WHERE created_by = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    // Node credentials they made go with them (a delivery node's carries credentials).
    sqlx::query("UPDATE nodes SET revoked_at = $2 WHERE created_by = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM grants WHERE principal_kind = 'user' AND principal_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM group_members WHERE user_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    super::scim::drop_user(&mut *conn, id).await?;
    super::elevations::end_all_of(&mut *conn, workspace, id, now).await?;
    sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deactivates a member of `workspace` in place (SCIM `active: false`): their tokens,
/// sessions and node credentials there are revoked, their grants and group memberships
/// there dropped and their role lowered to `read_only`, so that reactivating them
/// restores least privilege only. The membership row stays, marked deactivated.
pub async fn deactivate(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::elevations::end_all_of(&mut *conn, workspace, id, now).await?;
    sqlx::query(
        "UPDATE tokens SET revoked_at = $3 WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE workspace_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE nodes SET revoked_at = $3 WHERE workspace_id = $1 AND created_by = $2 AND revoked_at IS NULL",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM grants WHERE workspace_id = $1 AND principal_kind = 'user' AND principal_id = $2",
    )
    .bind(workspace)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM group_members WHERE user_id = $2 AND group_id IN (SELECT id FROM user_groups WHERE workspace_id = $1)",
    )
    .bind(workspace)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    // Nothing of theirs comes back with them: not their password (a member belongs to
    // one workspace), nor SCIM tokens or reset links they made, nor links made for them.
    forget_credentials(&mut *conn, id).await?;
    super::resets::end_for(&mut *conn, id, now).await?;
    sqlx::query(
        "UPDATE scim_tokens SET revoked_at = $3 WHERE workspace_id = $1 AND created_by = $2 AND revoked_at IS NULL",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE memberships SET role = 'read_only', scoped = 0, break_glass = 0, deactivated_at = $3 WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace)
    .bind(id)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops what a person signs in with locally: password, authenticator app and
/// recovery codes.
async fn forget_credentials(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    for table in ["passwords", "totp", "recovery_codes"] {
        sqlx::query(sql!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Reactivates a member [`deactivate`]d in `workspace`: they come back `read_only`,
/// with nothing of what they had.
pub async fn reactivate(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE memberships SET deactivated_at = NULL WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE users SET active = 1 WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes a member's names.
pub async fn set_names(
    conn: &mut AnyConnection,
    id: &str,
    first_name: &str,
    last_name: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET first_name = $2, last_name = $3 WHERE id = $1")
        .bind(id)
        .bind(first_name)
        .bind(last_name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Changes a user's email (lower-cased; unique across Sluice).
pub async fn set_email(conn: &mut AnyConnection, id: &str, email: &str) -> Result<(), StoreError> {
    let email = email.trim().to_lowercase();
    sqlx::query("UPDATE users SET email = $2 WHERE id = $1")
        .bind(id)
        .bind(&email)
        .execute(conn)
        .await
        .map_err(StoreError::conflict_as(format!("user {email}")))?;
    Ok(())
}

/// The user as [`policy::authorize`] sees them: role, state, own grants, groups with
/// their roles and grants. `None` when they are no member of `workspace`.
pub async fn principal(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<policy::User>, StoreError> {
    let Some(row) = get(conn, workspace, id).await? else {
        return Ok(None);
    };
    let own = grants::of(conn, &Holder::User(id.to_owned())).await?;
    let mut groups = Vec::new();
    for group in groups::of_user(conn, workspace, id).await? {
        let held = grants::of(conn, &Holder::Group(group.id.clone())).await?;
        groups.push(policy::Group {
            name: group.name,
            role: group.role,
            grants: held.iter().map(grants::GrantRow::grant).collect(),
        });
    }
    Ok(Some(policy::User {
        id: row.id,
        role: row.role,
        active: row.active,
        grants: own.iter().map(grants::GrantRow::grant).collect(),
        groups,
        scoped: row.scoped,
        elevations: super::elevations::approved_of(conn, workspace, id).await?,
    }))
}

/// Records a sign-in (console or SSO) as the user's last login.
pub async fn touch_login(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET last_login = $2 WHERE id = $1")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The owners of `workspace` who may still sign in with a password when the workspace
/// requires SSO, by id.
pub async fn break_glass_owners(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT user_id FROM memberships WHERE workspace_id = $1 AND break_glass = 1 AND role = 'owner' AND deactivated_at IS NULL ORDER BY user_id",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(StoreError::from))
        .collect()
}

/// Marks (or unmarks) a member as a break-glass owner. Whether the member exists.
pub async fn set_break_glass(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
    on: bool,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE memberships SET break_glass = $3 WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace)
    .bind(id)
    .bind(i64::from(on))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}
