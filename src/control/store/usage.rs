//! Usage booked from gateways' reports, and monthly event quotas.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sqlx::{AnyConnection, Row};

use super::{StoreError, ms};
use crate::usage::{Counts, Report, Standing, next_period, period_of, period_start};

/// How long a gateway process's last booked report is remembered (a report resent
/// after that is booked again).
const REMEMBER_REPORTS: Duration = Duration::days(35);

/// One source's usage on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    /// The source.
    pub source_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// What was counted.
    pub counts: Counts,
}

/// A workspace's quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Events a month for the whole workspace.
    pub workspace: Option<u64>,
    /// Events a month per source.
    pub sources: BTreeMap<String, u64>,
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn bind_count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Minutes of usage kept a minute at a time (the console shows the last hour).
const KEEP_MINUTES: i64 = 120;

/// One source's usage in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteRow {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    /// What was counted in it.
    pub counts: Counts,
}

/// A source's usage in each of the `minutes` minutes up to `now` (this minute last),
/// one row per minute, minutes without events as zeros.
pub async fn recent(
    conn: &mut AnyConnection,
    workspace: &str,
    source: &str,
    minutes: i64,
    now: DateTime<Utc>,
) -> Result<Vec<MinuteRow>, StoreError> {
    let last = now.timestamp().div_euclid(60);
    let first = last - minutes + 1;
    let rows = sqlx::query(
        "SELECT minute, accepted, refused, violating FROM usage_minutes
         WHERE workspace_id = $1 AND source_id = $2 AND minute >= $3 AND minute <= $4",
    )
    .bind(workspace)
    .bind(source)
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    let mut booked = BTreeMap::new();
    for row in rows {
        let minute: i64 = row.try_get(0)?;
        booked.insert(
            minute,
            Counts {
                accepted: count(row.try_get(1)?),
                refused: count(row.try_get(2)?),
                violating: count(row.try_get(3)?),
            },
        );
    }
    Ok((first..=last)
        .map(|m| MinuteRow {
            minute: DateTime::from_timestamp(m * 60, 0).unwrap_or(now),
            counts: booked.remove(&m).unwrap_or_default(),
        })
        .collect())
}

/// Books `report` from `gateway` on the day of `now`, once: `false` if this process's
/// report of that number (or a later one) was booked already. Run it in a transaction.
pub async fn book(
    conn: &mut AnyConnection,
    gateway: &str,
    report: &Report,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if report.sources.is_empty() {
        return Ok(true);
    }
    let claimed = sqlx::query(
        "INSERT INTO usage_reports (instance, gateway, seq, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (instance) DO UPDATE SET seq = excluded.seq, gateway = excluded.gateway, at = excluded.at
         WHERE usage_reports.seq < excluded.seq",
    )
    .bind(&report.instance)
    .bind(gateway)
    .bind(bind_count(report.seq))
    .bind(ms(now))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(false);
    }
    let day = now.format("%Y-%m-%d").to_string();
    let minute = now.timestamp().div_euclid(60);
    for (source, counts) in &report.sources {
        sqlx::query(
            "INSERT INTO usage_minutes (workspace_id, source_id, minute, accepted, refused, violating)
             SELECT workspace_id, id, $2, $3, $4, $5 FROM sources WHERE id = $1
             ON CONFLICT (workspace_id, source_id, minute) DO UPDATE SET
               accepted = usage_minutes.accepted + excluded.accepted,
               refused = usage_minutes.refused + excluded.refused,
               violating = usage_minutes.violating + excluded.violating",
        )
        .bind(source)
        .bind(minute)
        .bind(bind_count(counts.accepted))
        .bind(bind_count(counts.refused))
        .bind(bind_count(counts.violating))
        .execute(&mut *conn)
        .await?;
        // A source deleted since the events were counted has no workspace to book them in.
        sqlx::query(
            "INSERT INTO usage_days (workspace_id, source_id, day, accepted, refused, violating)
             SELECT workspace_id, id, $2, $3, $4, $5 FROM sources WHERE id = $1
             ON CONFLICT (workspace_id, source_id, day) DO UPDATE SET
               accepted = usage_days.accepted + excluded.accepted,
               refused = usage_days.refused + excluded.refused,
               violating = usage_days.violating + excluded.violating",
        )
        .bind(source)
        .bind(&day)
        .bind(bind_count(counts.accepted))
        .bind(bind_count(counts.refused))
        .bind(bind_count(counts.violating))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM usage_minutes WHERE minute < $1")
        .bind(minute - KEEP_MINUTES)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM usage_reports WHERE at < $1")
        .bind(ms(now - REMEMBER_REPORTS))
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// `YYYY-MM-DD` bounds of the month of `now`: its first day, and the next month's.
fn month_days(now: DateTime<Utc>) -> (String, String) {
    (
        period_start(now).format("%Y-%m-%d").to_string(),
        next_period(now).format("%Y-%m-%d").to_string(),
    )
}

/// Events accepted in the month of `now` by pool, over every workspace.
pub async fn standing(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
) -> Result<Standing, StoreError> {
    let (first, next) = month_days(now);
    let rows = sqlx::query(
        "SELECT workspace_id, source_id, CAST(SUM(accepted) AS BIGINT) FROM usage_days
         WHERE day >= $1 AND day < $2 GROUP BY workspace_id, source_id",
    )
    .bind(&first)
    .bind(&next)
    .fetch_all(&mut *conn)
    .await?;
    let mut used = BTreeMap::new();
    for row in rows {
        let workspace: String = row.try_get(0)?;
        let source: String = row.try_get(1)?;
        let accepted = count(row.try_get(2)?);
        for pool in [format!("workspace:{workspace}"), format!("source:{source}")] {
            let sum = used.entry(pool).or_insert(0_u64);
            *sum = sum.saturating_add(accepted);
        }
    }
    Ok(Standing {
        period: period_of(now),
        resets_at: next_period(now),
        used,
    })
}

/// A workspace's usage in the month of `at`, day by day, by source.
pub async fn month(
    conn: &mut AnyConnection,
    workspace: &str,
    at: DateTime<Utc>,
) -> Result<Vec<DayRow>, StoreError> {
    let (first, next) = month_days(at);
    let rows = sqlx::query(
        "SELECT source_id, day, accepted, refused, violating FROM usage_days
         WHERE workspace_id = $1 AND day >= $2 AND day < $3 ORDER BY source_id, day",
    )
    .bind(workspace)
    .bind(&first)
    .bind(&next)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DayRow {
                source_id: r.try_get(0)?,
                day: r.try_get(1)?,
                counts: Counts {
                    accepted: count(r.try_get(2)?),
                    refused: count(r.try_get(3)?),
                    violating: count(r.try_get(4)?),
                },
            })
        })
        .collect()
}

/// A workspace's quotas.
pub async fn quotas(conn: &mut AnyConnection, workspace: &str) -> Result<Quotas, StoreError> {
    let workspace_quota: Option<i64> =
        sqlx::query("SELECT monthly_event_quota FROM workspaces WHERE id = $1")
            .bind(workspace)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .flatten();
    let rows = sqlx::query(
        "SELECT id, monthly_event_quota FROM sources
         WHERE workspace_id = $1 AND monthly_event_quota IS NOT NULL ORDER BY id",
    )
    .bind(workspace)
    .fetch_all(&mut *conn)
    .await?;
    let mut sources = BTreeMap::new();
    for r in rows {
        sources.insert(r.try_get(0)?, count(r.try_get(1)?));
    }
    Ok(Quotas {
        workspace: workspace_quota.map(count),
        sources,
    })
}

/// Sets (or with `None` removes) the workspace's monthly quota.
pub async fn set_workspace_quota(
    conn: &mut AnyConnection,
    workspace: &str,
    quota: Option<u64>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE workspaces SET monthly_event_quota = $1 WHERE id = $2")
        .bind(quota.map(bind_count))
        .bind(workspace)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets (or with `None` removes) a source's monthly quota; `false` if no such source.
pub async fn set_source_quota(
    conn: &mut AnyConnection,
    workspace: &str,
    source: &str,
    quota: Option<u64>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE sources SET monthly_event_quota = $1 WHERE id = $2 AND workspace_id = $3",
    )
    .bind(quota.map(bind_count))
    .bind(source)
    .bind(workspace)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}
