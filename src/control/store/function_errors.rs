//! The failed runs of functions that remote nodes report, kept per function (the newest
//! [`KEEP`] of each).

use sqlx::{AnyConnection, Row};

use std::collections::BTreeMap;

use super::{StoreError, ms, time};
use crate::functions::errors::{KEEP, Recorded, Reported};

/// Keeps `runs` reported by node `node` for workspace `workspace`'s functions, then
/// only the newest [`KEEP`] of each function reported; how many were stored. Runs of a
/// function the workspace does not have are dropped, and so is a run already stored
/// (the same id: a report resent after a lost answer).
pub async fn keep(
    conn: &mut AnyConnection,
    workspace: &str,
    node: &str,
    runs: &[Reported],
) -> Result<u64, StoreError> {
    // Each function looked up once; of each, only the report's newest KEEP runs.
    let mut by_function: BTreeMap<&str, Vec<&Reported>> = BTreeMap::new();
    for run in runs {
        by_function.entry(&run.function).or_default().push(run);
    }
    let keep = i64::try_from(KEEP).unwrap_or(i64::MAX);
    let mut stored = 0;
    for (function, mut runs) in by_function {
        if super::functions::get(conn, workspace, function)
            .await?
            .is_none()
        {
            continue;
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.error.at));
        runs.truncate(KEEP);
        for run in runs {
            stored += sqlx::query(
                "INSERT INTO function_errors \
                 (workspace_id, id, function_id, node, at, message_id, target, kind, message) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (workspace_id, id) DO NOTHING",
            )
            .bind(workspace)
            .bind(&run.id)
            .bind(function)
            .bind(node)
            .bind(ms(run.error.at))
            .bind(run.error.message_id.as_deref())
            .bind(&run.error.target)
            .bind(&run.error.kind)
            .bind(&run.error.message)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
        sqlx::query(
            "DELETE FROM function_errors WHERE workspace_id = $1 AND function_id = $2 \
             AND id NOT IN (SELECT id FROM function_errors \
               WHERE workspace_id = $1 AND function_id = $2 ORDER BY at DESC, id DESC LIMIT $3)",
        )
        .bind(workspace)
        .bind(function)
        .bind(keep)
        .execute(&mut *conn)
        .await?;
    }
    Ok(stored)
}

/// The failed runs of `function` reported by remote nodes, newest first.
pub async fn last(
    conn: &mut AnyConnection,
    workspace: &str,
    function: &str,
) -> Result<Vec<Recorded>, StoreError> {
    let keep = i64::try_from(KEEP).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT at, message_id, target, kind, message, node FROM function_errors \
         WHERE workspace_id = $1 AND function_id = $2 ORDER BY at DESC, id DESC LIMIT $3",
    )
    .bind(workspace)
    .bind(function)
    .bind(keep)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Recorded {
                at: time(row.try_get(0)?)?,
                message_id: row.try_get(1)?,
                target: row.try_get(2)?,
                kind: row.try_get(3)?,
                message: row.try_get(4)?,
                node: Some(row.try_get(5)?),
            })
        })
        .collect()
}
