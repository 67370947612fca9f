//! User groups: members, and the workspace role a group maps to.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, time};
use crate::control::policy::Role;

/// A group row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRow {
    /// Id.
    pub id: String,
    /// Name (unique in the workspace).
    pub name: String,
    /// The workspace role every member gets at least.
    pub role: Option<Role>,
    /// `local` or `scim`.
    pub origin: String,
    /// Number of members.
    pub member_count: i64,
    /// Created.
    pub created_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT g.id, g.name, g.role, g.origin, g.created_at,
        (SELECT COUNT(*) FROM group_members gm WHERE gm.group_id = g.id)
     FROM user_groups g";

fn decode(row: &sqlx::any::AnyRow) -> Result<GroupRow, StoreError> {
    let role: Option<String> = row.try_get(2)?;
    let role = match role {
        None => None,
        Some(name) => Some(
            Role::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("group role {name}")))?,
        ),
    };
    Ok(GroupRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        role,
        origin: row.try_get(3)?,
        created_at: time(row.try_get(4)?)?,
        member_count: row.try_get(5)?,
    })
}

/// Creates a group; `origin` is `local` (the API) or `scim`.
pub async fn create(
    conn: &mut AnyConnection,
    workspace: &str,
    name: &str,
    role: Option<Role>,
    origin: &str,
    now: DateTime<Utc>,
) -> Result<GroupRow, StoreError> {
    let id = new_id("grp_");
    sqlx::query(
        "INSERT INTO user_groups (id, workspace_id, name, role, origin, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(workspace)
    .bind(name)
    .bind(role.map(Role::name))
    .bind(origin)
    .bind(ms(now))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("group {name}")))?;
    Ok(GroupRow {
        id,
        name: name.to_owned(),
        role,
        origin: origin.to_owned(),
        member_count: 0,
        created_at: now,
    })
}

/// A group of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<GroupRow>, StoreError> {
    let row = sqlx::query(sql!("{SELECT} WHERE g.workspace_id = $1 AND g.id = $2"))
        .bind(workspace)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// The group of `workspace` named `name` (names are unique in a workspace).
pub async fn by_name(
    conn: &mut AnyConnection,
    workspace: &str,
    name: &str,
) -> Result<Option<GroupRow>, StoreError> {
    let row = sqlx::query(sql!("{SELECT} WHERE g.workspace_id = $1 AND g.name = $2"))
        .bind(workspace)
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Every group of `workspace`, by id.
pub async fn all(conn: &mut AnyConnection, workspace: &str) -> Result<Vec<GroupRow>, StoreError> {
    let rows = sqlx::query(sql!("{SELECT} WHERE g.workspace_id = $1 ORDER BY g.id"))
        .bind(workspace)
        .fetch_all(conn)
        .await?;
    rows.iter().map(decode).collect()
}

/// Groups of `workspace` after the cursor id.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<GroupRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "{SELECT} WHERE g.workspace_id = $1 AND g.id > $2 ORDER BY g.id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// The groups a user belongs to.
pub async fn of_user(
    conn: &mut AnyConnection,
    workspace: &str,
    user: &str,
) -> Result<Vec<GroupRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "{SELECT} JOIN group_members m ON m.group_id = g.id WHERE g.workspace_id = $1 AND m.user_id = $2 ORDER BY g.id"
    ))
    .bind(workspace)
    .bind(user)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Adds a member (idempotent).
pub async fn add_member(
    conn: &mut AnyConnection,
    group: &str,
    user: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
        .bind(group)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a member.
pub async fn remove_member(
    conn: &mut AnyConnection,
    group: &str,
    user: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group)
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a group with its memberships and grants.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM scim_groups WHERE group_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM grants WHERE principal_kind = 'group' AND principal_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM user_groups WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Members of a group, as user ids.
pub async fn members(conn: &mut AnyConnection, group: &str) -> Result<Vec<String>, StoreError> {
    let rows =
        sqlx::query("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(group)
            .fetch_all(conn)
            .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Renames a group.
pub async fn rename(conn: &mut AnyConnection, id: &str, name: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE user_groups SET name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(conn)
        .await
        .map_err(StoreError::conflict_as(format!("group {name}")))?;
    Ok(())
}

/// Records that `email` joins `group` once they accept their invite.
pub async fn add_invite(
    conn: &mut AnyConnection,
    group: &str,
    email: &str,
) -> Result<(), StoreError> {
    let email = email.trim().to_lowercase();
    sqlx::query("DELETE FROM group_invites WHERE group_id = $1 AND email = $2")
        .bind(group)
        .bind(&email)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO group_invites (group_id, email) VALUES ($1, $2)")
        .bind(group)
        .bind(&email)
        .execute(conn)
        .await?;
    Ok(())
}

/// Emails invited into a group and not yet members.
pub async fn invites_of(conn: &mut AnyConnection, group: &str) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT email FROM group_invites WHERE group_id = $1 ORDER BY email")
        .bind(group)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Takes `email`'s pending group invites in `workspace`: the groups they join now.
pub async fn take_invites(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
) -> Result<Vec<String>, StoreError> {
    let email = email.trim().to_lowercase();
    let rows = sqlx::query(
        "SELECT i.group_id FROM group_invites i JOIN user_groups g ON g.id = i.group_id WHERE g.workspace_id = $1 AND i.email = $2 ORDER BY i.group_id",
    )
    .bind(workspace)
    .bind(&email)
    .fetch_all(&mut *conn)
    .await?;
    let groups: Vec<String> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    drop_invites(conn, workspace, &email).await?;
    Ok(groups)
}

/// Forgets `email`'s pending group invites in `workspace` (the invite was withdrawn).
pub async fn drop_invites(
    conn: &mut AnyConnection,
    workspace: &str,
    email: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM group_invites WHERE email = $2 AND group_id IN (SELECT id FROM user_groups WHERE workspace_id = $1)",
    )
    .bind(workspace)
    .bind(email.trim().to_lowercase())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the workspace role a group's members get at least (`None`: none).
pub async fn set_role(
    conn: &mut AnyConnection,
    id: &str,
    role: Option<Role>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE user_groups SET role = $2 WHERE id = $1")
        .bind(id)
        .bind(role.map(Role::name))
        .execute(conn)
        .await?;
    Ok(())
}
