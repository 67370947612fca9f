//! The failed runs of functions that remote nodes report, kept per function (the newest
//! [`KEEP`] of each).

use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, new_id, time};
use crate::functions::errors::{KEEP, Recorded, Reported};

/// Keeps `runs` reported by node `node` for workspace `workspace`'s functions (runs of
/// a function it does not have are dropped), then only the newest [`KEEP`] of each
/// function reported.
pub async fn keep(
    conn: &mut AnyConnection,
    workspace: &str,
    node: &str,
    runs: &[Reported],
) -> Result<usize, StoreError> {
    let mut kept = 0;
    let mut touched: Vec<&str> = Vec::new();
    for run in runs {
        if super::functions::get(conn, workspace, &run.function)
            .await?
            .is_none()
        {
            continue;
        }
        sqlx::query(
            "INSERT INTO function_errors \
             (id, workspace_id, function_id, node, at, message_id, target, kind, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(new_id("fe_"))
        .bind(workspace)
        .bind(&run.function)
        .bind(node)
        .bind(ms(run.error.at))
        .bind(run.error.message_id.as_deref())
        .bind(&run.error.target)
        .bind(&run.error.kind)
        .bind(&run.error.message)
        .execute(&mut *conn)
        .await?;
        kept += 1;
        if !touched.contains(&run.function.as_str()) {
            touched.push(&run.function);
        }
    }
    let keep = i64::try_from(KEEP).unwrap_or(i64::MAX);
    for function in touched {
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
    Ok(kept)
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
