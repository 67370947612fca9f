//! Usage: the events each source's requests brought (accepted, refused, violating),
//! counted at the edge and booked in the control plane's store, and the monthly event
//! quotas the edge enforces from those books.
//!
//! A gateway counts into its [`Tally`] on the request path (atomics, no I/O) and, once
//! a second, [`run`] sends what it counted since its last report to the control plane's
//! [`Ledger`] (the store itself in process, `POST /internal/v1/usage` from a remote
//! gateway). The answer is the month's [`Standing`]: events accepted so far per quota
//! *pool* (a workspace, a source), summed over every gateway. A request is refused with
//! `429 quota_exceeded` when the standing plus what this gateway accepted since reaches a
//! quota its source draws on.
//!
//! Reports are booked at most once: each carries its process's `instance` and a rising
//! `seq`, and a report whose outcome is unknown (a timeout) is resent unchanged until it
//! is acknowledged, while newer counts wait in the tally. Usage is booked on the day
//! (UTC) the control plane receives it, by the control plane's clock.
//!
//! This module knows neither the gateway nor the control plane: both use it.

mod remote;
mod tally;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use remote::RemoteLedger;
pub use tally::{Quota, Tally};

/// How often a gateway reports.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for the control plane's answer to one report.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Most sources one report carries: a gateway with more counted sends several reports
/// in a row (each well under the control plane's 1 MiB body limit).
pub const SOURCES_PER_REPORT: usize = 2_000;
/// Most events of one kind one report may count for one source (a million a second
/// for eleven days): the control plane refuses a report with more.
pub const MAX_COUNT: u64 = 1_000_000_000_000;

/// One source's events since the previous report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Counts {
    /// Stored for delivery.
    pub accepted: u64,
    /// Read and not stored for delivery: invalid items, events a tracking plan blocked,
    /// events of a request refused after its body was read (too large once expanded, the
    /// log unavailable).
    pub refused: u64,
    /// With at least one tracking-plan violation (accepted or blocked).
    pub violating: u64,
}

impl Counts {
    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Adds `other` in (saturating: counts from another process are not trusted to
    /// stay small).
    pub fn add(&mut self, other: Counts) {
        self.accepted = self.accepted.saturating_add(other.accepted);
        self.refused = self.refused.saturating_add(other.refused);
        self.violating = self.violating.saturating_add(other.violating);
    }

    /// The largest of the three.
    pub fn most(&self) -> u64 {
        self.accepted.max(self.refused).max(self.violating)
    }
}

/// A gateway's report: what it counted since its previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// The reporting process (random, new at every start).
    pub instance: String,
    /// Rises by one per report of this instance; a report is booked once.
    pub seq: u64,
    /// Counts by source id.
    pub sources: BTreeMap<String, Counts>,
}

/// The current month as the control plane's books have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Standing {
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// When the next month begins: quotas start again.
    pub resets_at: DateTime<Utc>,
    /// Events accepted this month by quota pool (`workspace:<id>`, `source:<id>`).
    pub used: BTreeMap<String, u64>,
}

/// Why a report was not booked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The control plane could not be reached, did not answer in time, or answered
    /// anything but a booking or a refusal of the report itself: resend.
    #[error("cannot reach the control plane: {0}")]
    Unreachable(String),
    /// The control plane read the report and refused it (`400`, `413`, `422`): it will
    /// never book it, and it is dropped.
    #[error("the control plane refused the usage report: {0}")]
    Refused(String),
    /// The store failed.
    #[error("the control plane's store failed: {0}")]
    Store(String),
}

/// Where a gateway's reports are booked.
pub trait Ledger: Send {
    /// Books `report` (once, whatever the number of calls) and answers the standing.
    fn exchange(
        &mut self,
        report: &Report,
    ) -> impl Future<Output = Result<Standing, LedgerError>> + Send;

    /// For logs.
    fn describe(&self) -> String;
}

/// The first exchange, before the gateway serves: the standing a restarted gateway
/// enforces from its first request. Failure is logged: the gateway then serves with
/// quotas counted from its own traffic until the control plane answers.
pub async fn start<L: Ledger>(tally: &Tally, ledger: &mut L) {
    let report = tally.probe();
    match tokio::time::timeout(TIMEOUT, ledger.exchange(&report)).await {
        Ok(Ok(standing)) => tally.settle(standing, &report),
        Ok(Err(error)) => {
            tracing::warn!(%error, ledger = %ledger.describe(), "usage: no standing yet; quotas count this gateway's traffic until the control plane answers");
        }
        Err(_) => {
            tracing::warn!(ledger = %ledger.describe(), "usage: the control plane did not answer in time; quotas count this gateway's traffic until it does");
        }
    }
}

/// Reports every [`INTERVAL`] until `stop`, then once more (the last counts of a
/// graceful stop are booked too).
pub async fn run<L: Ledger>(tally: Arc<Tally>, mut ledger: L, stop: CancellationToken) {
    // A report whose outcome is unknown is resent as it was until it is acknowledged.
    let mut unsent: Option<Report> = None;
    let mut failing = false;
    loop {
        let last = tokio::select! {
            () = tokio::time::sleep(INTERVAL) => false,
            () = stop.cancelled() => true,
        };
        loop {
            let report = unsent.take().unwrap_or_else(|| tally.take());
            let full = report.sources.len() >= SOURCES_PER_REPORT;
            unsent = exchange(&tally, &mut ledger, report, &mut failing).await;
            // A full report may have left counts behind: they are sent at once.
            if !full || unsent.is_some() {
                break;
            }
        }
        if last {
            if let Some(report) = unsent {
                let lost: u64 = report.sources.values().map(|c| c.accepted).sum();
                tracing::warn!(
                    accepted = lost,
                    "usage: stopping with a report the control plane did not book"
                );
            }
            return;
        }
    }
}

/// Sends one report; the report back when it is to be resent.
async fn exchange<L: Ledger>(
    tally: &Tally,
    ledger: &mut L,
    report: Report,
    failing: &mut bool,
) -> Option<Report> {
    match tokio::time::timeout(TIMEOUT, ledger.exchange(&report)).await {
        Ok(Ok(standing)) => {
            tally.settle(standing, &report);
            if *failing {
                tracing::info!(ledger = %ledger.describe(), "usage: reports are booked again");
                *failing = false;
            }
            None
        }
        Ok(Err(LedgerError::Refused(why))) => {
            // Resending cannot help, and would hold back every newer count.
            let accepted: u64 = report.sources.values().map(|c| c.accepted).sum();
            tracing::error!(
                error = %why,
                ledger = %ledger.describe(),
                seq = report.seq,
                sources = report.sources.len(),
                accepted,
                "usage: report refused for good; its counts are dropped"
            );
            tally.forget(&report);
            None
        }
        Ok(Err(error)) => {
            if !*failing {
                tracing::warn!(%error, ledger = %ledger.describe(), "usage: report not booked; keeping it and resending");
                *failing = true;
            }
            Some(report)
        }
        Err(_) => {
            if !*failing {
                tracing::warn!(ledger = %ledger.describe(), "usage: no answer in time; keeping the report and resending");
                *failing = true;
            }
            Some(report)
        }
    }
}

/// The month of `now` (UTC), `YYYY-MM`.
pub fn period_of(now: DateTime<Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// The first instant of the month after the one of `now` (UTC).
pub fn next_period(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike as _, TimeZone as _};
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// The first instant of the month of `now` (UTC).
pub fn period_start(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{Datelike as _, TimeZone as _};
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    /// A control plane that refuses every report (as one does a report it will never
    /// book), counting what it was sent.
    struct Refusing(Arc<std::sync::atomic::AtomicU64>);

    impl Ledger for Refusing {
        async fn exchange(&mut self, report: &Report) -> Result<Standing, LedgerError> {
            self.0
                .fetch_max(report.seq, std::sync::atomic::Ordering::Relaxed);
            Err(LedgerError::Refused("400: bad report".into()))
        }

        fn describe(&self) -> String {
            "refusing".into()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_report_is_dropped_not_resent() {
        let tally = Arc::new(Tally::default());
        let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            Arc::clone(&tally),
            Refusing(Arc::clone(&seen)),
            stop.clone(),
        ));
        for _ in 0..3 {
            tally.count(
                "a",
                &[],
                Counts {
                    accepted: 1,
                    ..Counts::default()
                },
            );
            tokio::time::sleep(INTERVAL + Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.expect("run ends");
        // Each interval took a new report: the refused one was not held back and resent.
        assert!(
            seen.load(std::sync::atomic::Ordering::Relaxed) >= 3,
            "{seen:?}"
        );
    }

    #[test]
    fn periods_are_calendar_months_in_utc() {
        let at = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
                .single()
                .expect("time")
        };
        assert_eq!(period_of(at(2026, 12, 4)), "2026-12");
        assert_eq!(
            next_period(at(2026, 12, 4)),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
                .single()
                .expect("t")
        );
        assert_eq!(
            next_period(at(2027, 2, 28)),
            Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0)
                .single()
                .expect("t")
        );
        assert_eq!(
            period_start(at(2027, 2, 28)),
            Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0)
                .single()
                .expect("t")
        );
    }
}
