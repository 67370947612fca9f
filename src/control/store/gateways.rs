//! Remote gateways: which catalog revision each applied last, and when it asked.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms, time};

/// A gateway's last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRow {
    /// The name it gives (`--node-name`, default its host name).
    pub id: String,
    /// The catalog revision it has applied.
    pub revision: u64,
    /// The address it called from.
    pub address: String,
    /// When it last asked.
    pub seen_at: DateTime<Utc>,
}

/// Records a gateway's report (not audited: it changes nothing people govern).
pub async fn report(
    conn: &mut AnyConnection,
    id: &str,
    revision: u64,
    address: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO gateways (id, revision, address, seen_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, address = excluded.address, seen_at = excluded.seen_at",
    )
    .bind(id)
    .bind(i64::try_from(revision).unwrap_or(i64::MAX))
    .bind(address)
    .bind(ms(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Every gateway that reported, by name.
pub async fn list(conn: &mut AnyConnection) -> Result<Vec<GatewayRow>, StoreError> {
    let rows = sqlx::query("SELECT id, revision, address, seen_at FROM gateways ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(GatewayRow {
                id: r.try_get(0)?,
                revision: u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                address: r.try_get(2)?,
                seen_at: time(r.try_get(3)?)?,
            })
        })
        .collect()
}
