//! Grants: a level on one source, one destination or every source with a label, held
//! by a user or a group.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, opt_time, time};
use crate::control::policy::{Grant, Level, Target};

/// Who holds a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Holder {
    /// A user (by id).
    User(String),
    /// A group (by id).
    Group(String),
}

impl Holder {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::User(id) => ("user", id),
            Self::Group(id) => ("group", id),
        }
    }
}

/// A grant row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRow {
    /// Id.
    pub id: String,
    /// Holder.
    pub principal: Holder,
    /// What it applies to.
    pub resource: Target,
    /// The level.
    pub level: Level,
    /// Why it was given.
    pub justification: String,
    /// Who approved it.
    pub approved_by: String,
    /// Optional end (just-in-time access).
    pub expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last confirmed by an access review.
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// Days between two reviews of a grant.
pub const REVIEW_EVERY_DAYS: i64 = 90;

impl GrantRow {
    /// When it is due for review: 90 days after its last review, or its creation.
    pub fn next_review(&self) -> DateTime<Utc> {
        self.reviewed_at.unwrap_or(self.created_at) + chrono::TimeDelta::days(REVIEW_EVERY_DAYS)
    }

    /// The policy's view.
    pub fn grant(&self) -> Grant {
        Grant {
            target: self.resource.clone(),
            level: self.level,
            expires_at: self.expires_at,
        }
    }
}

/// A target as stored: kind, id (or label key), label value.
pub(super) fn target_parts(target: &Target) -> (&'static str, &str, &str) {
    match target {
        Target::Source { id } => ("source", id, ""),
        Target::Destination { id } => ("destination", id, ""),
        Target::SourceLabel { key, value } => ("source_label", key, value),
    }
}

const COLUMNS: &str = "id, principal_kind, principal_id, target_kind, target_id, target_value, level, justification, approved_by, expires_at, created_at, reviewed_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<GrantRow, StoreError> {
    let kind: String = row.try_get(1)?;
    let pid: String = row.try_get(2)?;
    let principal = match kind.as_str() {
        "user" => Holder::User(pid),
        "group" => Holder::Group(pid),
        other => return Err(StoreError::Corrupt(format!("grant principal {other}"))),
    };
    let resource = target_of(row.try_get(3)?, row.try_get(4)?, row.try_get(5)?)?;
    let rank: i64 = row.try_get(6)?;
    Ok(GrantRow {
        id: row.try_get(0)?,
        principal,
        resource,
        level: Level::from_rank(rank)
            .ok_or_else(|| StoreError::Corrupt(format!("grant level {rank}")))?,
        justification: row.try_get(7)?,
        approved_by: row.try_get(8)?,
        expires_at: opt_time(row.try_get(9)?)?,
        created_at: time(row.try_get(10)?)?,
        reviewed_at: opt_time(row.try_get(11)?)?,
    })
}

/// A stored target back from its kind, id (or label key) and label value.
pub(super) fn target_of(kind: String, id: String, value: String) -> Result<Target, StoreError> {
    Ok(match kind.as_str() {
        "source" => Target::Source { id },
        "destination" => Target::Destination { id },
        "source_label" => Target::SourceLabel { key: id, value },
        other => return Err(StoreError::Corrupt(format!("grant target {other}"))),
    })
}

/// What a new grant says.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// Holder.
    pub principal: Holder,
    /// Target.
    pub resource: Target,
    /// Level.
    pub level: Level,
    /// Why.
    pub justification: String,
    /// Who approved it.
    pub approved_by: String,
    /// Optional end.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Sets a grant: a holder has one grant per target, so this replaces an earlier one.
pub async fn put(
    conn: &mut AnyConnection,
    workspace: &str,
    new: NewGrant,
    now: DateTime<Utc>,
) -> Result<GrantRow, StoreError> {
    let (pk, pid) = new.principal.parts();
    let (tk, tid, tv) = target_parts(&new.resource);
    sqlx::query(
        "DELETE FROM grants WHERE principal_kind = $1 AND principal_id = $2 AND target_kind = $3 AND target_id = $4 AND target_value = $5",
    )
    .bind(pk)
    .bind(pid)
    .bind(tk)
    .bind(tid)
    .bind(tv)
    .execute(&mut *conn)
    .await?;
    let row = GrantRow {
        id: new_id("grt_"),
        principal: new.principal.clone(),
        resource: new.resource.clone(),
        level: new.level,
        justification: new.justification,
        approved_by: new.approved_by,
        expires_at: new.expires_at,
        created_at: now,
        reviewed_at: None,
    };
    sqlx::query(sql!(
        "INSERT INTO grants (workspace_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL)"
    ))
    .bind(workspace)
    .bind(&row.id)
    .bind(pk)
    .bind(pid)
    .bind(tk)
    .bind(tid)
    .bind(tv)
    .bind(row.level.rank())
    .bind(&row.justification)
    .bind(&row.approved_by)
    .bind(row.expires_at.map(ms))
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(row)
}

/// Records that a review confirmed a grant.
pub async fn mark_reviewed(
    conn: &mut AnyConnection,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE grants SET reviewed_at = $2 WHERE id = $1")
        .bind(id)
        .bind(ms(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Grants held by one user or group.
pub async fn of(conn: &mut AnyConnection, holder: &Holder) -> Result<Vec<GrantRow>, StoreError> {
    let (pk, pid) = holder.parts();
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM grants WHERE principal_kind = $1 AND principal_id = $2 ORDER BY id"
    ))
    .bind(pk)
    .bind(pid)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Every grant of a workspace.
pub async fn list(conn: &mut AnyConnection, workspace: &str) -> Result<Vec<GrantRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM grants WHERE workspace_id = $1 ORDER BY id"
    ))
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// One grant of a workspace.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<GrantRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM grants WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Removes a grant.
pub async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM grants WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every label some grant of `workspace` targets (expired grants included), or some
/// elevation asks for or lends (ended ones included): the labels that carry access (see
/// [`crate::control::policy::Action::ChangeLabels`]).
pub async fn governed_labels(
    conn: &mut AnyConnection,
    workspace: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT target_id, target_value FROM grants WHERE workspace_id = $1 AND target_kind = 'source_label' \
         UNION SELECT target_id, target_value FROM elevations WHERE workspace_id = $1 AND target_kind = 'source_label' \
           AND status IN ('PENDING', 'APPROVED', 'ENDED') \
         ORDER BY 1, 2",
    )
    .bind(workspace)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
