//! A gateway's counters: what it counted since its last report, and what its quotas
//! stand at.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use super::{Counts, Report, SOURCES_PER_REPORT, Standing, next_period};

/// A monthly event quota a source draws on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The pool it counts in: `workspace:<id>` or `source:<id>`.
    pub pool: Arc<str>,
    /// Events a month.
    pub monthly_events: u64,
}

/// One source's counters.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    violating: AtomicU64,
}

impl Counters {
    fn add(&self, counts: Counts) {
        if counts.accepted > 0 {
            self.accepted.fetch_add(counts.accepted, Ordering::Relaxed);
        }
        if counts.refused > 0 {
            self.refused.fetch_add(counts.refused, Ordering::Relaxed);
        }
        if counts.violating > 0 {
            self.violating
                .fetch_add(counts.violating, Ordering::Relaxed);
        }
    }

    fn take(&self) -> Counts {
        Counts {
            accepted: self.accepted.swap(0, Ordering::Relaxed),
            refused: self.refused.swap(0, Ordering::Relaxed),
            violating: self.violating.swap(0, Ordering::Relaxed),
        }
    }
}

/// A gateway's usage counters (shared by every request; no I/O).
pub struct Tally {
    instance: String,
    seq: AtomicU64,
    /// By source, since the last report.
    pending: DashMap<String, Counters>,
    /// Accepted per pool since the last report.
    pool_pending: DashMap<Arc<str>, AtomicU64>,
    /// Accepted per pool and not yet in the standing (pending, or reported and not booked).
    unbooked: DashMap<Arc<str>, AtomicU64>,
    /// Pool sums of the reports taken and not yet booked, by `seq`.
    taken: Mutex<HashMap<u64, BTreeMap<Arc<str>, u64>>>,
    standing: ArcSwapOption<Standing>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            instance: uuid::Uuid::new_v4().to_string(),
            seq: AtomicU64::new(0),
            pending: DashMap::new(),
            pool_pending: DashMap::new(),
            unbooked: DashMap::new(),
            taken: Mutex::new(HashMap::new()),
            standing: ArcSwapOption::empty(),
        }
    }
}

fn bump(map: &DashMap<Arc<str>, AtomicU64>, pool: &Arc<str>, n: u64) {
    if let Some(counter) = map.get(pool) {
        counter.fetch_add(n, Ordering::Relaxed);
        return;
    }
    map.entry(Arc::clone(pool))
        .or_default()
        .fetch_add(n, Ordering::Relaxed);
}

impl Tally {
    /// Counts one request's events for `source`, which draws on `quotas`.
    pub fn count(&self, source: &str, quotas: &[Quota], counts: Counts) {
        if counts.is_empty() {
            return;
        }
        match self.pending.get(source) {
            Some(counters) => counters.add(counts),
            None => self
                .pending
                .entry(source.to_owned())
                .or_default()
                .add(counts),
        }
        if counts.accepted > 0 {
            for quota in quotas {
                bump(&self.pool_pending, &quota.pool, counts.accepted);
                bump(&self.unbooked, &quota.pool, counts.accepted);
            }
        }
    }

    /// `Ok` while every quota of `quotas` has room at `now`; else the whole seconds until
    /// the period ends (≥ 1). A batch that crosses a quota is accepted whole: the quota can
    /// be passed by one request, and by what other gateways accept within a report's
    /// interval.
    pub fn admit(&self, quotas: &[Quota], now: DateTime<Utc>) -> Result<(), u64> {
        if quotas.is_empty() {
            return Ok(());
        }
        let standing = self.standing.load();
        // A standing of a past month counts nothing until the next report's answer.
        let (booked, resets_at) = match standing.as_deref() {
            Some(s) if now < s.resets_at => (Some(&s.used), s.resets_at),
            Some(_) => (None, next_period(now)),
            None => (None, next_period(now)),
        };
        let stale = standing.is_some() && booked.is_none();
        for quota in quotas {
            let mut used = booked
                .and_then(|b| b.get(&*quota.pool))
                .copied()
                .unwrap_or(0);
            if !stale {
                used = used.saturating_add(
                    self.unbooked
                        .get(&quota.pool)
                        .map_or(0, |n| n.load(Ordering::Relaxed)),
                );
            }
            if used >= quota.monthly_events {
                let wait = u64::try_from((resets_at - now).num_milliseconds()).unwrap_or(0);
                return Err(wait.div_ceil(1000).max(1));
            }
        }
        Ok(())
    }

    /// An empty report: asks for the standing only.
    pub fn probe(&self) -> Report {
        Report {
            instance: self.instance.clone(),
            seq: 0,
            sources: BTreeMap::new(),
        }
    }

    /// Moves the counters into a new report: those of at most [`SOURCES_PER_REPORT`]
    /// sources (a full report leaves the rest for the next one). Every pool's count goes
    /// with it, so until the next report is booked a quota may read low by what the
    /// sources left behind accepted.
    pub fn take(&self) -> Report {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut sources = BTreeMap::new();
        for entry in &self.pending {
            if sources.len() == SOURCES_PER_REPORT {
                break;
            }
            let counts = entry.value().take();
            if !counts.is_empty() {
                sources.insert(entry.key().clone(), counts);
            }
        }
        let mut pools = BTreeMap::new();
        for entry in &self.pool_pending {
            let n = entry.value().swap(0, Ordering::Relaxed);
            if n > 0 {
                pools.insert(Arc::clone(entry.key()), n);
            }
        }
        if let Ok(mut taken) = self.taken.lock() {
            taken.insert(seq, pools);
        }
        Report {
            instance: self.instance.clone(),
            seq,
            sources,
        }
    }

    /// `report` is booked and `standing` includes it.
    pub fn settle(&self, standing: Standing, report: &Report) {
        // Out of `unbooked` first, then the new standing: in between, a quota reads low
        // by this report (an admission too many) rather than high (a refusal too many).
        self.release(report);
        self.standing.store(Some(Arc::new(standing)));
    }

    /// `report` will never be booked (the control plane refused it): its events stop
    /// counting towards quotas here too.
    pub fn forget(&self, report: &Report) {
        self.release(report);
    }

    /// Takes `report`'s pool sums out of what is not booked yet (once per report).
    fn release(&self, report: &Report) {
        let pools = self
            .taken
            .lock()
            .ok()
            .and_then(|mut taken| taken.remove(&report.seq))
            .unwrap_or_default();
        for (pool, n) in pools {
            if let Some(counter) = self.unbooked.get(&pool) {
                let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(n))
                });
            }
        }
    }

    /// The last standing the control plane gave.
    pub fn standing(&self) -> Option<Arc<Standing>> {
        self.standing.load_full()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn quota(pool: &str, n: u64) -> Quota {
        Quota {
            pool: pool.into(),
            monthly_events: n,
        }
    }

    fn accepted(n: u64) -> Counts {
        Counts {
            accepted: n,
            ..Counts::default()
        }
    }

    #[test]
    fn a_quota_holds_across_reports_and_ends_with_its_month() {
        let tally = Tally::default();
        let now = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 0, 0)
            .single()
            .expect("time");
        let quotas = [quota("source:a", 5), quota("workspace:w", 100)];
        tally.count("a", &quotas, accepted(3));
        assert_eq!(tally.admit(&quotas, now), Ok(()));
        let report = tally.take();
        assert_eq!(report.sources["a"], accepted(3));
        // Not booked yet: the three still count.
        tally.count("a", &quotas, accepted(2));
        assert_eq!(tally.admit(&quotas, now), Err(3600));
        // Booked, with another gateway's 1: 3 + 1 booked, 2 unbooked here.
        let standing = Standing {
            period: "2026-12".into(),
            resets_at: next_period(now),
            used: BTreeMap::from([("source:a".into(), 4), ("workspace:w".into(), 4)]),
        };
        tally.settle(standing.clone(), &report);
        assert_eq!(tally.admit(&quotas, now), Err(3600));
        // A source without quotas is never refused; the next month starts over.
        assert_eq!(tally.admit(&[], now), Ok(()));
        let january = next_period(now);
        assert_eq!(tally.admit(&quotas, january), Ok(()));
        // A resent report settles once: the second settle takes nothing off again.
        tally.settle(standing, &report);
        assert_eq!(tally.admit(&[quota("source:a", 7)], now), Ok(()));
        assert_eq!(tally.admit(&[quota("source:a", 6)], now), Err(3600));
    }

    #[test]
    fn a_report_carries_a_bounded_number_of_sources_and_the_rest_follows() {
        let tally = Tally::default();
        let quotas = [quota("workspace:w", u64::MAX)];
        for i in 0..SOURCES_PER_REPORT + 3 {
            tally.count(&format!("s{i}"), &quotas, accepted(1));
        }
        let first = tally.take();
        assert_eq!(first.sources.len(), SOURCES_PER_REPORT);
        let second = tally.take();
        assert_eq!(second.sources.len(), 3);
        assert!(
            second
                .sources
                .keys()
                .all(|k| !first.sources.contains_key(k))
        );
        assert!(tally.take().sources.is_empty());
    }

    #[test]
    fn a_report_refused_for_good_stops_counting_towards_quotas() {
        let tally = Tally::default();
        let now = Utc
            .with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
            .single()
            .expect("time");
        let quotas = [quota("source:a", 5)];
        tally.count("a", &quotas, accepted(5));
        assert!(tally.admit(&quotas, now).is_err());
        let report = tally.take();
        tally.forget(&report);
        assert_eq!(tally.admit(&quotas, now), Ok(()));
        // Forgotten once: forgetting again takes nothing more off.
        tally.count("a", &quotas, accepted(5));
        tally.forget(&report);
        assert!(tally.admit(&quotas, now).is_err());
    }

    #[test]
    fn empty_counts_leave_no_report_entry() {
        let tally = Tally::default();
        tally.count("a", &[], Counts::default());
        tally.count(
            "b",
            &[],
            Counts {
                refused: 2,
                violating: 1,
                ..Counts::default()
            },
        );
        let report = tally.take();
        assert_eq!(report.sources.len(), 1);
        assert_eq!(report.seq, 1);
        assert_eq!(tally.take().seq, 2);
        assert!(tally.take().sources.is_empty());
        assert_eq!(tally.probe().seq, 0);
    }
}
