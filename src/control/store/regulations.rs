//! Regulations (requests about named users' events) and the suppression list they keep.
//!
//! A suppression is a row per workspace (`source_id` ''), or per source, and subject. Each
//! row written gets the next `seq` from `suppression_head`; since changes commit one at a
//! time, gateways follow the list by asking for the rows past the last `seq` they applied
//! ([`changes_after`]). A lifted suppression keeps its row (`suppressed` 0) for them.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, as_i64, as_u64, ms, opt_time, time};
use crate::suppression::Change;

/// A stored regulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegulationRow {
    /// Id (sorts by creation time).
    pub id: String,
    /// The source it is about; `None` for the whole workspace.
    pub source_id: Option<String>,
    /// `SUPPRESS_ONLY`, `UNSUPPRESS`, … (as the API says it).
    pub regulation_type: String,
    /// `USER_ID`.
    pub subject_type: String,
    /// The subjects, as given (repeats removed).
    pub subjects: Vec<String>,
    /// `FINISHED`, … (as the API says it).
    pub status: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A new regulation id: the creation time in milliseconds (so ids sort as the
/// regulations were made) and 64 random bits.
pub fn new_id(at: DateTime<Utc>) -> String {
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    format!("reg{:012x}{random:016x}", ms(at).max(0))
}

/// Stores a regulation.
pub async fn insert(
    conn: &mut AnyConnection,
    workspace: &str,
    row: &RegulationRow,
) -> Result<(), StoreError> {
    let subjects = serde_json::to_string(&row.subjects)
        .map_err(|e| StoreError::Corrupt(format!("regulation subjects: {e}")))?;
    sqlx::query(
        "INSERT INTO regulations (workspace_id, id, source_id, regulation_type, subject_type, \
         subjects, status, created_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(workspace)
    .bind(&row.id)
    .bind(row.source_id.as_deref().unwrap_or_default())
    .bind(&row.regulation_type)
    .bind(&row.subject_type)
    .bind(subjects)
    .bind(&row.status)
    .bind(ms(row.created_at))
    .bind(row.finished_at.map(ms))
    .execute(conn)
    .await
    .map_err(StoreError::conflict_as(format!("regulation {}", row.id)))?;
    Ok(())
}

const COLUMNS: &str =
    "id, source_id, regulation_type, subject_type, subjects, status, created_at, finished_at";

fn row_of(row: &sqlx::any::AnyRow) -> Result<RegulationRow, StoreError> {
    let id: String = row.try_get(0)?;
    let source: String = row.try_get(1)?;
    let subjects: String = row.try_get(4)?;
    let subjects = serde_json::from_str(&subjects)
        .map_err(|e| StoreError::Corrupt(format!("regulation {id} subjects: {e}")))?;
    Ok(RegulationRow {
        source_id: (!source.is_empty()).then_some(source),
        regulation_type: row.try_get(2)?,
        subject_type: row.try_get(3)?,
        subjects,
        status: row.try_get(5)?,
        created_at: time(row.try_get(6)?)?,
        finished_at: opt_time(row.try_get(7)?)?,
        id,
    })
}

/// One regulation of `workspace`.
pub async fn get(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<Option<RegulationRow>, StoreError> {
    let row = sqlx::query(sql!(
        "SELECT {COLUMNS} FROM regulations WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(row_of).transpose()
}

/// Which regulations a list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'f> {
    /// Only those about this source (`None`: every regulation of the workspace).
    pub source: Option<&'f str>,
    /// Only those in this status.
    pub status: Option<&'f str>,
    /// Only those of these types (empty: every type).
    pub types: &'f [String],
}

/// Up to `count` regulations of `workspace` after id `after`, in id (creation) order.
pub async fn list(
    conn: &mut AnyConnection,
    workspace: &str,
    filter: Filter<'_>,
    after: &str,
    count: u32,
) -> Result<Vec<RegulationRow>, StoreError> {
    let types = if filter.types.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = (0..filter.types.len())
            .map(|i| format!("${}", i + 6))
            .collect();
        format!(" AND regulation_type IN ({})", list.join(", "))
    };
    let statement = sql!(
        "SELECT {COLUMNS} FROM regulations WHERE workspace_id = $1 AND id > $2 \
         AND ($3 = '' OR source_id = $3) AND ($4 = '' OR status = $4){types} \
         ORDER BY id LIMIT $5"
    );
    let mut query = sqlx::query(statement)
        .bind(workspace)
        .bind(after)
        .bind(filter.source.unwrap_or_default())
        .bind(filter.status.unwrap_or_default())
        .bind(i64::from(count));
    for kind in filter.types {
        query = query.bind(kind);
    }
    let rows = query.fetch_all(conn).await?;
    rows.iter().map(row_of).collect()
}

/// Deletes a regulation; true when there was one.
pub async fn delete(
    conn: &mut AnyConnection,
    workspace: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM regulations WHERE workspace_id = $1 AND id = $2")
        .bind(workspace)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Takes `n` new `seq` numbers; returns the first.
async fn next_seqs(conn: &mut AnyConnection, n: usize) -> Result<u64, StoreError> {
    let n = as_i64(n as u64);
    let last: i64 =
        sqlx::query("UPDATE suppression_head SET seq = seq + $1 WHERE id = 1 RETURNING seq")
            .bind(n)
            .fetch_one(conn)
            .await?
            .try_get(0)?;
    Ok(as_u64(last - n + 1))
}

/// Rows one statement writes at most (6 values each: well under both databases' bound
/// on bound values).
const ROWS_PER_STATEMENT: usize = 500;

/// Writes `subjects`' rows in `scope` as `suppressed` (or lifted) by `regulation`, each
/// with a new `seq`, in statements of [`ROWS_PER_STATEMENT`] rows.
async fn write_rows(
    conn: &mut AnyConnection,
    workspace: &str,
    scope: Option<&str>,
    subjects: &[String],
    regulation: &str,
    suppressed: bool,
) -> Result<(), StoreError> {
    let mut seq = next_seqs(conn, subjects.len()).await?;
    for chunk in subjects.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let at = i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    at + 1,
                    at + 2,
                    at + 3,
                    at + 4,
                    at + 5,
                    at + 6
                )
            })
            .collect();
        let rows = rows.join(", ");
        let statement = sql!(
            "INSERT INTO suppressions (workspace_id, source_id, subject, regulation_id, suppressed, seq) \
             VALUES {rows} ON CONFLICT (workspace_id, source_id, subject) DO UPDATE SET \
             regulation_id = excluded.regulation_id, suppressed = excluded.suppressed, seq = excluded.seq"
        );
        let mut query = sqlx::query(statement);
        for subject in chunk {
            query = query
                .bind(workspace)
                .bind(scope.unwrap_or_default())
                .bind(subject)
                .bind(regulation)
                .bind(i64::from(suppressed))
                .bind(as_i64(seq));
            seq += 1;
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Suppresses `subjects` in `scope` (`None`: the whole workspace) on behalf of
/// `regulation` (a subject already suppressed there is now `regulation`'s).
pub async fn suppress(
    conn: &mut AnyConnection,
    workspace: &str,
    scope: Option<&str>,
    subjects: &[String],
    regulation: &str,
) -> Result<(), StoreError> {
    write_rows(conn, workspace, scope, subjects, regulation, true).await
}

/// Lifts the suppression of `subjects` in `scope` (`None`: the whole workspace), where
/// there is one, on behalf of `regulation`; returns how many were lifted.
pub async fn lift(
    conn: &mut AnyConnection,
    workspace: &str,
    scope: Option<&str>,
    subjects: &[String],
    regulation: &str,
) -> Result<usize, StoreError> {
    let mut held = Vec::new();
    for chunk in subjects.chunks(ROWS_PER_STATEMENT) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 3)).collect();
        let list = list.join(", ");
        let statement = sql!(
            "SELECT subject FROM suppressions WHERE workspace_id = $1 AND source_id = $2 \
             AND suppressed = 1 AND subject IN ({list})"
        );
        let mut query = sqlx::query(statement)
            .bind(workspace)
            .bind(scope.unwrap_or_default());
        for subject in chunk {
            query = query.bind(subject);
        }
        for row in query.fetch_all(&mut *conn).await? {
            held.push(row.try_get::<String, _>(0)?);
        }
    }
    write_rows(conn, workspace, scope, &held, regulation, false).await?;
    Ok(held.len())
}

/// A source is deleted: its suppressions are lifted (so a new source given the same id
/// inherits none) and its regulations deleted.
pub async fn forget_source(conn: &mut AnyConnection, source: &str) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT workspace_id, subject FROM suppressions WHERE source_id = $1 AND suppressed = 1 \
         ORDER BY workspace_id, subject",
    )
    .bind(source)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_workspace: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for row in &rows {
        by_workspace
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    for (workspace, subjects) in by_workspace {
        write_rows(conn, &workspace, Some(source), &subjects, "", false).await?;
    }
    sqlx::query("DELETE FROM regulations WHERE source_id = $1")
        .bind(source)
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to `count` distinct suppressed subjects of `workspace` (any scope) after `after`,
/// in order.
pub async fn suppressed(
    conn: &mut AnyConnection,
    workspace: &str,
    after: &str,
    count: u32,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT DISTINCT subject FROM suppressions WHERE workspace_id = $1 AND suppressed = 1 \
         AND subject > $2 ORDER BY subject LIMIT $3",
    )
    .bind(workspace)
    .bind(after)
    .bind(i64::from(count))
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Up to `limit` rows past `after`, in `seq` order. From 0 (a gateway with an empty list)
/// lifted rows are left out.
pub async fn changes_after(
    conn: &mut AnyConnection,
    after: u64,
    limit: u32,
) -> Result<Vec<Change>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, workspace_id, source_id, subject, suppressed FROM suppressions \
         WHERE seq > $1 AND ($1 > 0 OR suppressed = 1) ORDER BY seq LIMIT $2",
    )
    .bind(as_i64(after))
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let source: String = r.try_get(2)?;
            let suppressed: i64 = r.try_get(4)?;
            Ok(Change {
                seq: as_u64(r.try_get(0)?),
                workspace: r.try_get(1)?,
                source: (!source.is_empty()).then_some(source),
                subject: r.try_get(3)?,
                suppressed: suppressed != 0,
            })
        })
        .collect()
}

/// The last `seq` given out, and the list's epoch (random per store).
pub async fn head(conn: &mut AnyConnection) -> Result<(u64, String), StoreError> {
    let row = sqlx::query("SELECT seq, epoch FROM suppression_head WHERE id = 1")
        .fetch_one(conn)
        .await?;
    Ok((as_u64(row.try_get(0)?), row.try_get(1)?))
}
