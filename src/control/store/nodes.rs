//! Node credentials: remote gateways and delivery nodes (digest, role, expiry, revocation).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, opt_time, time};
use crate::control::policy::NodeRole;

/// A node credential's row (never the credential itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    /// Id.
    pub id: String,
    /// Workspace.
    #[serde(skip)]
    pub workspace_id: String,
    /// Name given to it (e.g. the node's host name).
    pub name: String,
    /// Gateway or delivery.
    pub role: NodeRole,
    /// The prefix and first characters, for people to recognise it.
    pub display: String,
    /// The user who made it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Refused from then on.
    pub expires_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl NodeRow {
    /// Whether it may be used at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none_or(|at| at > now) && now < self.expires_at
    }
}

const COLUMNS: &str =
    "id, workspace_id, name, role, display, created_by, created_at, expires_at, revoked_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<NodeRow, StoreError> {
    let role: String = row.try_get(3)?;
    Ok(NodeRow {
        id: row.try_get(0)?,
        workspace_id: row.try_get(1)?,
        name: row.try_get(2)?,
        role: NodeRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("node role {role}")))?,
        display: row.try_get(4)?,
        created_by: row.try_get(5)?,
        created_at: time(row.try_get(6)?)?,
        expires_at: time(row.try_get(7)?)?,
        revoked_at: opt_time(row.try_get(8)?)?,
    })
}

/// What a new node credential says.
#[derive(Debug, Clone)]
pub struct NewNode<'a> {
    /// Name.
    pub name: &'a str,
    /// Role.
    pub role: NodeRole,
    /// Hex SHA-256 of the credential.
    pub digest: &'a str,
    /// Display prefix.
    pub display: &'a str,
    /// The user making it.
    pub created_by: &'a str,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Stores a node credential's digest.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    new: NewNode<'_>,
    now: DateTime<Utc>,
) -> Result<NodeRow, StoreError> {
    let row = NodeRow {
        id: new_id("node_"),
        workspace_id: workspace.to_owned(),
        name: new.name.to_owned(),
        role: new.role,
        display: new.display.to_owned(),
        created_by: new.created_by.to_owned(),
        created_at: now,
        expires_at: new.expires_at,
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO nodes (id, workspace_id, name, role, digest, display, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.id)
    .bind(workspace)
    .bind(new.name)
    .bind(new.role.name())
    .bind(new.digest)
    .bind(new.display)
    .bind(new.created_by)
    .bind(ms(now))
    .bind(ms(new.expires_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as("node credential"))?;
    Ok(row)
}

/// The node credential with this digest (hex), whatever its state.
pub async fn by_digest(
    conn: &mut AnyConnection,
    digest: &str,
) -> Result<Option<NodeRow>, StoreError> {
    let row = sqlx::query(sql!("SELECT {COLUMNS} FROM nodes WHERE digest = $1"))
        .bind(digest)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// A live (not revoked) node credential of `workspace`. A revoked one stays stored, so
/// its digest is never taken again and the audit trail's subject remains, but the API
/// no longer shows it: revoking is its `DELETE`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<NodeRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM nodes WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Live node credentials of `workspace` after the cursor id, at most `limit`.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<NodeRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM nodes WHERE workspace_id = $1 AND id > $2 AND revoked_at IS NULL \
         ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Revokes a node credential.
pub async fn revoke(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE nodes SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}
