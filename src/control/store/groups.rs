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

/// Creates a group.
pub async fn create(
    conn: &mut AnyConnection,
    workspace: &str,
    name: &str,
    role: Option<Role>,
    now: DateTime<Utc>,
) -> Result<GroupRow, StoreError> {
    let id = new_id("grp_");
    sqlx::query(
        "INSERT INTO user_groups (id, workspace_id, name, role, origin, created_at) VALUES ($1, $2, $3, $4, 'local', $5)",
    )
    .bind(&id)
    .bind(workspace)
    .bind(name)
    .bind(role.map(Role::name))
    .bind(ms(now))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("group {name}")))?;
    Ok(GroupRow {
        id,
        name: name.to_owned(),
        role,
        origin: "local".into(),
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
