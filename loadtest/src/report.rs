//! What a run measured, as text and JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::generator::{Pace, Settings};

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// The percentiles of a histogram of microseconds.
    pub fn of(latency: &Histogram<u64>) -> Self {
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: latency.max() as f64 / 1000.0,
        }
    }
}

/// One run's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// Requests that got an answer or failed.
    pub requests: u64,
    /// Answered requests per second.
    pub requests_per_sec: f64,
    /// Events in 200-answered requests per second.
    pub events_per_sec: f64,
    /// Events in 200-answered requests.
    pub events_ok: u64,
    /// Request body bytes sent per second.
    pub bytes_per_sec: f64,
    /// Latency (open loop: from the intended start).
    pub latency_ms: Latency,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection or protocol errors.
    pub errors: u64,
    /// Pacing used, for the record.
    pub pace: String,
    /// Connections used.
    pub connections: usize,
}

impl Report {
    /// Builds a report from a run's tallies.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: &Settings,
        elapsed: Duration,
        requests: u64,
        events_ok: u64,
        bytes: u64,
        errors: u64,
        latency: &Histogram<u64>,
        statuses: BTreeMap<u16, u64>,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let answered: u64 = statuses.values().sum();
        Self {
            seconds: secs,
            requests,
            requests_per_sec: answered as f64 / secs,
            events_per_sec: events_ok as f64 / secs,
            events_ok,
            bytes_per_sec: bytes as f64 / secs,
            latency_ms: Latency::of(latency),
            statuses,
            errors,
            pace: match settings.pace {
                Pace::Closed => "closed".to_owned(),
                Pace::Open { rate } => format!("open {rate}/s"),
            },
            connections: settings.connections,
        }
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let l = &self.latency_ms;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "{} requests in {:.1}s ({}, {} connections)\n  requests/s {:>10.0}\n  events/s   {:>10.0}\n  MB/s       {:>10.2}\n  latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n  statuses   {}\n  errors     {}",
            self.requests,
            self.seconds,
            self.pace,
            self.connections,
            self.requests_per_sec,
            self.events_per_sec,
            self.bytes_per_sec / 1e6,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            statuses.join(", "),
            self.errors
        )
    }
}
