//! Tracking-plan change requests: proposed rules waiting for review.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};
use crate::protocols::RuleDoc;

/// Where a change request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Waiting for review.
    Open,
    /// Approved: its rules are a published version.
    Published,
    /// Refused by a reviewer.
    Rejected,
    /// Taken back by its author.
    Withdrawn,
}

impl Status {
    /// Every status.
    pub const ALL: [Self; 4] = [Self::Open, Self::Published, Self::Rejected, Self::Withdrawn];

    /// The stored and wire name (`OPEN`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Published => "PUBLISHED",
            Self::Rejected => "REJECTED",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    /// A status by name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A change request row.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRequestRow {
    /// Id (`cr_…`).
    pub id: String,
    /// The plan it changes.
    pub plan_id: String,
    /// Who proposed it.
    pub author_id: String,
    /// Why.
    pub description: String,
    /// The published version it starts from (0: none).
    pub base_version: u32,
    /// The proposed rules, whole.
    pub rules: Vec<RuleDoc>,
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
    /// The version an approval published.
    pub published_version: Option<u32>,
}

const COLUMNS: &str = "id, plan_id, author_id, description, base_version, rules, status, \
                       created_at, updated_at, decided_by, decided_at, decision_comment, \
                       published_version";

fn version(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn decode(row: &sqlx::any::AnyRow) -> Result<ChangeRequestRow, StoreError> {
    let id: String = row.try_get(0)?;
    let rules: String = row.try_get(5)?;
    let status: String = row.try_get(6)?;
    Ok(ChangeRequestRow {
        rules: serde_json::from_str(&rules)
            .map_err(|e| StoreError::Corrupt(format!("change request {id} rules: {e}")))?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("change request {id} status {status}")))?,
        plan_id: row.try_get(1)?,
        author_id: row.try_get(2)?,
        description: row.try_get(3)?,
        base_version: version(row.try_get(4)?),
        created_at: time(row.try_get(7)?)?,
        updated_at: time(row.try_get(8)?)?,
        decided_by: row.try_get(9)?,
        decided_at: row.try_get::<Option<i64>, _>(10)?.map(time).transpose()?,
        comment: row.try_get(11)?,
        published_version: row.try_get::<Option<i64>, _>(12)?.map(version),
        id,
    })
}

fn rules_json(rules: &[RuleDoc]) -> Result<String, StoreError> {
    serde_json::to_string(rules).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Inserts an open change request.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    cr: &ChangeRequestRow,
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO change_requests (workspace_id, {COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(workspace)
    .bind(&cr.id)
    .bind(&cr.plan_id)
    .bind(&cr.author_id)
    .bind(&cr.description)
    .bind(i64::from(cr.base_version))
    .bind(rules_json(&cr.rules)?)
    .bind(cr.status.name())
    .bind(ms(cr.created_at))
    .bind(ms(cr.updated_at))
    .bind(&cr.decided_by)
    .bind(cr.decided_at.map(ms))
    .bind(&cr.comment)
    .bind(cr.published_version.map(i64::from))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("change request {}", cr.id)))?;
    Ok(())
}

/// A change request of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<ChangeRequestRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM change_requests WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// What a list keeps (`""`: any).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// Status name.
    pub status: &'a str,
    /// Author's user id.
    pub author: &'a str,
    /// Plan id.
    pub plan: &'a str,
}

/// Change requests of `workspace` after the cursor id, newest id order.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    filter: Filter<'_>,
    after: &str,
    limit: u32,
) -> Result<Vec<ChangeRequestRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM change_requests WHERE workspace_id = $1 AND id > $2 \
         AND ($4 = '' OR status = $4) AND ($5 = '' OR author_id = $5) \
         AND ($6 = '' OR plan_id = $6) ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .bind(filter.status)
    .bind(filter.author)
    .bind(filter.plan)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// The author's open change request on a plan, if any (their draft).
pub async fn open_of(
    conn: &mut AnyConnection,
    plan: &str,
    author: &str,
) -> Result<Option<ChangeRequestRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM change_requests WHERE plan_id = $1 AND author_id = $2 \
         AND status = 'OPEN' ORDER BY created_at DESC, id LIMIT 1"
    ))
    .bind(plan)
    .bind(author)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Replaces an open request's description, rules and base; false when it is no
/// longer open.
pub async fn amend(conn: &mut AnyConnection, cr: &ChangeRequestRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE change_requests SET description = $2, rules = $3, base_version = $4, \
         updated_at = $5 WHERE id = $1 AND status = 'OPEN'",
    )
    .bind(&cr.id)
    .bind(&cr.description)
    .bind(rules_json(&cr.rules)?)
    .bind(i64::from(cr.base_version))
    .bind(ms(cr.updated_at))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Closes an open request as `cr.status` says (with who, when, the comment and the
/// published version); false when it was no longer open (someone decided first).
pub async fn decide(conn: &mut AnyConnection, cr: &ChangeRequestRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE change_requests SET status = $2, decided_by = $3, decided_at = $4, \
         decision_comment = $5, published_version = $6, updated_at = $4 \
         WHERE id = $1 AND status = 'OPEN'",
    )
    .bind(&cr.id)
    .bind(cr.status.name())
    .bind(&cr.decided_by)
    .bind(cr.decided_at.map(ms))
    .bind(&cr.comment)
    .bind(cr.published_version.map(i64::from))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
