//! Changes to protected (production) sources and destinations waiting for review, and
//! the labels that protect.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Waiting for review.
    Open,
    /// Approved and being applied (back to `Open` if the change fails; rejected or
    /// withdrawn when stuck, its approval cut short).
    Applying,
    /// Approved and applied.
    Applied,
    /// Refused by a reviewer.
    Rejected,
    /// Taken back by its author.
    Withdrawn,
}

impl Status {
    /// Every status.
    pub const ALL: [Self; 5] = [
        Self::Open,
        Self::Applying,
        Self::Applied,
        Self::Rejected,
        Self::Withdrawn,
    ];

    /// The stored and wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Applying => "APPLYING",
            Self::Applied => "APPLIED",
            Self::Rejected => "REJECTED",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    /// A status by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A request to change a protected resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChangeRow {
    /// Id (`rc_…`).
    pub id: String,
    /// `source` or `destination`.
    pub resource_type: String,
    /// Its id.
    pub resource_id: String,
    /// The protected sources that made it a request.
    pub protected_sources: Vec<String>,
    /// Who asked.
    pub author_id: String,
    /// Why.
    pub description: String,
    /// The API call as made: method, path (under the API's base, with its query), body.
    pub method: String,
    /// See `method`.
    pub path: String,
    /// See `method`: the body as sent, sealed with the store's key (it may carry a
    /// destination's credentials).
    pub sealed_body: String,
    /// The resource when it was proposed.
    pub before: Value,
    /// Where it stands.
    pub status: Status,
    /// Proposed.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Who approved, rejected or withdrew it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// The reviewer's comment.
    pub comment: String,
}

const COLUMNS: &str = "id, resource_type, resource_id, protected_sources, author_id, \
                       description, method, path, body, before_state, status, created_at, \
                       updated_at, decided_by, decided_at, decision_comment";

fn json(id: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("resource change {id}: {e}")))
}

fn decode(row: &sqlx::any::AnyRow) -> Result<ResourceChangeRow, StoreError> {
    let id: String = row.try_get(0)?;
    let status: String = row.try_get(10)?;
    let protected: String = row.try_get(3)?;
    Ok(ResourceChangeRow {
        resource_type: row.try_get(1)?,
        resource_id: row.try_get(2)?,
        protected_sources: serde_json::from_str(&protected)
            .map_err(|e| StoreError::Corrupt(format!("resource change {id}: {e}")))?,
        author_id: row.try_get(4)?,
        description: row.try_get(5)?,
        method: row.try_get(6)?,
        path: row.try_get(7)?,
        sealed_body: row.try_get(8)?,
        before: json(&id, &row.try_get::<String, _>(9)?)?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("resource change {id} status {status}")))?,
        created_at: time(row.try_get(11)?)?,
        updated_at: time(row.try_get(12)?)?,
        decided_by: row.try_get(13)?,
        decided_at: row.try_get::<Option<i64>, _>(14)?.map(time).transpose()?,
        comment: row.try_get(15)?,
        id,
    })
}

/// Inserts a request.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    rc: &ResourceChangeRow,
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO resource_changes (workspace_id, {COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(workspace)
    .bind(&rc.id)
    .bind(&rc.resource_type)
    .bind(&rc.resource_id)
    .bind(Value::from(rc.protected_sources.clone()).to_string())
    .bind(&rc.author_id)
    .bind(&rc.description)
    .bind(&rc.method)
    .bind(&rc.path)
    .bind(&rc.sealed_body)
    .bind(rc.before.to_string())
    .bind(rc.status.name())
    .bind(ms(rc.created_at))
    .bind(ms(rc.updated_at))
    .bind(&rc.decided_by)
    .bind(rc.decided_at.map(ms))
    .bind(&rc.comment)
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!(
        "resource change {}",
        rc.id
    )))?;
    Ok(())
}

/// A request of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<ResourceChangeRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM resource_changes WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Requests of `workspace` after the cursor id, in id order; `status` `""`: any.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    status: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<ResourceChangeRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM resource_changes WHERE workspace_id = $1 AND id > $2 \
         AND ($4 = '' OR status = $4) ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .bind(status)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Moves a request from `from` to `rc.status` with who, when and the comment; false when
/// it was no longer in `from` (someone decided first).
pub async fn settle(
    conn: &mut AnyConnection,
    rc: &ResourceChangeRow,
    from: Status,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE resource_changes SET status = $2, decided_by = $3, decided_at = $4, \
         decision_comment = $5, updated_at = $6 WHERE id = $1 AND status = $7",
    )
    .bind(&rc.id)
    .bind(rc.status.name())
    .bind(&rc.decided_by)
    .bind(rc.decided_at.map(ms))
    .bind(&rc.comment)
    .bind(ms(rc.updated_at))
    .bind(from.name())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The labels (`key:value`) that protect a workspace's sources.
pub async fn protected_labels(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<String>, StoreError> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT protected_labels FROM workspaces WHERE id = $1")
            .bind(workspace)
            .fetch_optional(conn)
            .await?;
    match text {
        Some(text) => serde_json::from_str(&text).map_err(|e| {
            StoreError::Corrupt(format!("workspace {workspace} protected labels: {e}"))
        }),
        None => Ok(Vec::new()),
    }
}

/// Replaces the labels that protect a workspace's sources.
pub async fn set_protected_labels(
    conn: &mut AnyConnection,
    workspace: &str,
    labels: &[String],
) -> Result<(), StoreError> {
    sqlx::query("UPDATE workspaces SET protected_labels = $2 WHERE id = $1")
        .bind(workspace)
        .bind(Value::from(labels.to_vec()).to_string())
        .execute(conn)
        .await?;
    Ok(())
}
