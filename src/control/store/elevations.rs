//! Just-in-time elevations: requests, decisions and windows.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{AnyConnection, Row};

use super::grants::{target_of, target_parts};
use super::{StoreError, ms, opt_time, time};
use crate::control::policy::{self, Grant, Level, Raise, Role};

/// Where a request stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Waiting for an approver.
    Pending,
    /// Approved: live in its window.
    Approved,
    /// Refused.
    Denied,
    /// Taken back before a decision.
    Cancelled,
    /// Ended before its window closed.
    Ended,
}

impl Stored {
    fn name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Denied => "DENIED",
            Self::Cancelled => "CANCELLED",
            Self::Ended => "ENDED",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Approved,
            Self::Denied,
            Self::Cancelled,
            Self::Ended,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// An elevation row.
#[derive(Debug, Clone, PartialEq)]
pub struct ElevationRow {
    /// Id (`elv_…`).
    pub id: String,
    /// Who asked.
    pub user_id: String,
    /// What for.
    pub raise: Raise,
    /// Why.
    pub reason: String,
    /// How long, once approved.
    pub duration: TimeDelta,
    /// Where it stands.
    pub status: Stored,
    /// Asked.
    pub requested_at: DateTime<Utc>,
    /// Who approved, denied or ended it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's comment.
    pub comment: String,
    /// The window (approved ones).
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl ElevationRow {
    /// The policy's view, for an approved one.
    pub fn policy(&self) -> Option<policy::Elevation> {
        let (starts_at, ends_at) = self.window?;
        (self.status == Stored::Approved || self.status == Stored::Ended).then(|| {
            policy::Elevation {
                id: self.id.clone(),
                raise: self.raise.clone(),
                starts_at,
                ends_at,
            }
        })
    }
}

const COLUMNS: &str = "id, user_id, target_kind, target_id, target_value, wanted, reason, \
                       duration_minutes, status, requested_at, decided_by, decided_at, \
                       comment, starts_at, ends_at";

fn decode(row: &sqlx::any::AnyRow) -> Result<ElevationRow, StoreError> {
    let id: String = row.try_get(0)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("elevation {id} {what}"));
    let kind: String = row.try_get(2)?;
    let wanted: String = row.try_get(5)?;
    let raise = if kind == "role" {
        Raise::Role {
            role: Role::parse(&wanted).ok_or_else(|| corrupt("role"))?,
        }
    } else {
        let rank: i64 = wanted.parse().map_err(|_| corrupt("level"))?;
        Raise::Level(Grant {
            target: target_of(kind, row.try_get(3)?, row.try_get(4)?)?,
            level: Level::from_rank(rank).ok_or_else(|| corrupt("level"))?,
            expires_at: None,
        })
    };
    let status: String = row.try_get(8)?;
    let window = match (opt_time(row.try_get(13)?)?, opt_time(row.try_get(14)?)?) {
        (Some(from), Some(to)) => Some((from, to)),
        _ => None,
    };
    let mut raise = raise;
    if let (Raise::Level(grant), Some((_, ends))) = (&mut raise, window) {
        grant.expires_at = Some(ends);
    }
    Ok(ElevationRow {
        user_id: row.try_get(1)?,
        raise,
        reason: row.try_get(6)?,
        duration: TimeDelta::minutes(row.try_get(7)?),
        status: Stored::parse(&status).ok_or_else(|| corrupt("status"))?,
        requested_at: time(row.try_get(9)?)?,
        decided_by: row.try_get(10)?,
        decided_at: opt_time(row.try_get(11)?)?,
        comment: row.try_get(12)?,
        window,
        id,
    })
}

/// Stores a new (pending) request.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    row: &ElevationRow,
) -> Result<(), StoreError> {
    let (kind, id, value, wanted) = match &row.raise {
        Raise::Role { role } => ("role", "", "", role.name().to_owned()),
        Raise::Level(grant) => {
            let (kind, id, value) = target_parts(&grant.target);
            (kind, id, value, grant.level.rank().to_string())
        }
    };
    sqlx::query(sql!(
        "INSERT INTO elevations (workspace_id, {COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, '', NULL, NULL)"
    ))
    .bind(workspace)
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(kind)
    .bind(id)
    .bind(value)
    .bind(wanted)
    .bind(&row.reason)
    .bind(row.duration.num_minutes())
    .bind(row.status.name())
    .bind(ms(row.requested_at))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("elevation {}", row.id)))?;
    Ok(())
}

/// An elevation of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<ElevationRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM elevations WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Elevations of `workspace` (of one user: `user` non-empty) after the cursor id.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    user: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<ElevationRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM elevations WHERE workspace_id = $1 AND ($2 = '' OR user_id = $2) \
         AND id > $3 ORDER BY id LIMIT $4"
    ))
    .bind(workspace)
    .bind(user)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// A user's approved elevations (the policy decides which are live).
pub async fn approved_of(
    conn: &mut AnyConnection,
    workspace: &str,
    user: &str,
) -> Result<Vec<policy::Elevation>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM elevations WHERE workspace_id = $1 AND user_id = $2 \
         AND status IN ('APPROVED', 'ENDED') AND starts_at IS NOT NULL ORDER BY id"
    ))
    .bind(workspace)
    .bind(user)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .filter_map(ElevationRow::policy)
        .collect())
}

/// Records a decision on a pending request (`Approved` with its window, or `Denied`);
/// false when it was no longer pending.
pub async fn decide(conn: &mut AnyConnection, row: &ElevationRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE elevations SET status = $2, decided_by = $3, decided_at = $4, comment = $5, \
         starts_at = $6, ends_at = $7 WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(&row.id)
    .bind(row.status.name())
    .bind(&row.decided_by)
    .bind(row.decided_at.map(ms))
    .bind(&row.comment)
    .bind(row.window.map(|w| ms(w.0)))
    .bind(row.window.map(|w| ms(w.1)))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends every pending or live elevation of a user at `now` (they leave, or are
/// deactivated: nothing of theirs comes back when they return).
pub async fn end_all_of(
    conn: &mut AnyConnection,
    workspace: &str,
    user: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE elevations SET \
           status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE 'ENDED' END, \
           ends_at = CASE WHEN status = 'PENDING' THEN ends_at ELSE $3 END \
         WHERE workspace_id = $1 AND user_id = $2 \
           AND (status = 'PENDING' OR (status = 'APPROVED' AND ends_at > $3))",
    )
    .bind(workspace)
    .bind(user)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a request at `now`: a pending one is cancelled, an approved one's window closes
/// now. False when there was nothing to end.
pub async fn end(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE elevations SET \
           status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE 'ENDED' END, \
           ends_at = CASE WHEN status = 'PENDING' THEN ends_at ELSE $3 END, \
           decided_by = COALESCE(decided_by, $2), decided_at = COALESCE(decided_at, $3) \
         WHERE id = $1 AND (status = 'PENDING' OR (status = 'APPROVED' AND ends_at > $3))",
    )
    .bind(id)
    .bind(by)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
