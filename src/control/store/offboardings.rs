//! Removal records: what an offboarding transferred, revoked and listed.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, opt_time, time};

/// A removal record.
#[derive(Debug, Clone, PartialEq)]
pub struct OffboardingRow {
    /// Id (`off_…`).
    pub id: String,
    /// Who left (user id).
    pub user_id: String,
    /// Their email then.
    pub email: String,
    /// Who took over what they owned.
    pub successor_id: String,
    /// Who ran the offboarding.
    pub performed_by: String,
    /// When.
    pub performed_at: DateTime<Utc>,
    /// The report (JSON): everything transferred, revoked and listed.
    pub report: serde_json::Value,
    /// When the write keys listed "rotate if shared" were rotated.
    pub keys_rotated_at: Option<DateTime<Utc>>,
    /// By whom.
    pub keys_rotated_by: Option<String>,
}

const COLUMNS: &str = "id, user_id, email, successor_id, performed_by, performed_at, report, \
                       keys_rotated_at, keys_rotated_by";

fn decode(row: &sqlx::any::AnyRow) -> Result<OffboardingRow, StoreError> {
    let id: String = row.try_get(0)?;
    let report: String = row.try_get(6)?;
    Ok(OffboardingRow {
        report: serde_json::from_str(&report)
            .map_err(|e| StoreError::Corrupt(format!("offboarding {id} report: {e}")))?,
        id,
        user_id: row.try_get(1)?,
        email: row.try_get(2)?,
        successor_id: row.try_get(3)?,
        performed_by: row.try_get(4)?,
        performed_at: time(row.try_get(5)?)?,
        keys_rotated_at: opt_time(row.try_get(7)?)?,
        keys_rotated_by: row.try_get(8)?,
    })
}

/// Stores a removal record.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    row: &OffboardingRow,
) -> Result<(), StoreError> {
    sqlx::query(sql!(
        "INSERT INTO offboardings (workspace_id, {COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(workspace)
    .bind(&row.id)
    .bind(&row.user_id)
    .bind(&row.email)
    .bind(&row.successor_id)
    .bind(&row.performed_by)
    .bind(ms(row.performed_at))
    .bind(row.report.to_string())
    .bind(row.keys_rotated_at.map(ms))
    .bind(&row.keys_rotated_by)
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("offboarding {}", row.id)))?;
    Ok(())
}

/// A removal record of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<OffboardingRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM offboardings WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Removal records of `workspace` after the cursor id.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<OffboardingRow>, StoreError> {
    let rows = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM offboardings WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(workspace)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter().map(decode).collect()
}

/// Marks the record's write keys rotated; false if they already were.
pub async fn keys_rotated(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE offboardings SET keys_rotated_at = $2, keys_rotated_by = $3 \
         WHERE id = $1 AND keys_rotated_at IS NULL",
    )
    .bind(id)
    .bind(ms(at))
    .bind(by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hands `from`'s open change requests in `workspace` (of tracking plans and of protected
/// resources) to `to`. (The node credentials and
/// SCIM tokens they made are not handed over: they saw those secrets, so removing them
/// revokes them.)
pub async fn hand_over(
    conn: &mut AnyConnection,
    workspace: &str,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE change_requests SET author_id = $3 WHERE workspace_id = $1 AND author_id = $2 AND status = 'OPEN'",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE resource_changes SET author_id = $3 WHERE workspace_id = $1 AND author_id = $2 AND status = 'OPEN'",
    )
    .bind(workspace)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(())
}
