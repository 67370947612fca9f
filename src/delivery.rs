//! Delivery: forward each stored event to the destinations connected to its source,
//! at least once, from either log.
//!
//! A supervisor keeps one [`worker`] per destination in the catalog (started,
//! restarted with new settings, or stopped within a catalog propagation interval). Each
//! worker reads through its destination's [`Reading`](crate::log::reading::Reading) of
//! the event log: the local log from a persisted cursor with a hold on the log, or a
//! durable JetStream consumer ([`stream`]). A slow or dead destination holds up only
//! itself; when holds keep the local log at its byte bound, the gateway answers 503
//! (back-pressure), never drops. Failures are retried with exponential back-off and
//! jitter (honouring `Retry-After`); permanent failures, and retryable ones past
//! `retry.max_age_secs`, go to a per-destination dead-letter store that can be
//! replayed. Every delivered event keeps its `messageId`, so a duplicate after a crash
//! is recognisable.
//!
//! Files, under the log directory: `delivery/<id>.cursor` (local log),
//! `dead-letters/<id>.ndjson`.

pub mod backoff;
pub mod dead_letter;
pub mod route;
pub mod sink;
pub mod stream;
mod supervisor;
pub mod transform;
pub mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{self, Destination};
use crate::log::Log;
use crate::log::reading::backlog::Backlog;
use crate::log::reading::local;
use crate::telemetry;

pub use dead_letter::ReplayError;
pub use sink::{Blame, Network, Outgoing, SendError, Sink};

/// Dead-letter directory inside the log directory.
pub fn dead_letter_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("dead-letters")
}

/// Per-destination metric handles.
pub struct Metrics {
    /// Events delivered.
    pub delivered: Counter,
    /// Retries scheduled.
    pub retried: Counter,
    /// Events dead-lettered.
    pub dead_lettered: Counter,
    /// Sends under way.
    pub in_flight: Gauge,
    /// Received → delivered, seconds.
    pub latency: Histogram,
    /// Log records this destination has not processed yet.
    pub lag_events: Gauge,
    /// Age of the oldest event waiting for this destination, seconds.
    pub lag_seconds: Gauge,
    /// 0 closed, 1 open, 2 half-open.
    pub circuit: Gauge,
}

/// The metric handles of a destination.
pub fn metrics_for(id: &str) -> Metrics {
    Metrics {
        delivered: telemetry::DELIVERY_DELIVERED.with([id]),
        retried: telemetry::DELIVERY_RETRIED.with([id]),
        dead_lettered: telemetry::DELIVERY_DEAD_LETTERED.with([id]),
        in_flight: telemetry::DELIVERY_IN_FLIGHT.with([id]),
        latency: telemetry::DELIVERY_LATENCY.with([id]),
        lag_events: telemetry::DELIVERY_LAG_EVENTS.with([id]),
        lag_seconds: telemetry::DELIVERY_LAG_SECONDS.with([id]),
        circuit: telemetry::DELIVERY_CIRCUIT.with([id]),
    }
}

/// Counts what a send delivered, and each event's time from receipt to delivery.
pub(crate) fn record_delivered(metrics: &Metrics, events: &[Outgoing]) {
    metrics.delivered.increment(events.len() as u64);
    let now = chrono::Utc::now();
    for o in events {
        if let Some(at) = o.received_at {
            let secs = (now - at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            metrics.latency.record(secs);
        }
    }
}

/// Counts a failed send to `destination` by its reason.
pub(crate) fn count_failed(destination: &str, error: &SendError) {
    telemetry::DELIVERY_FAILED
        .with([destination, error.reason()])
        .increment(1);
}

/// Handle to running delivery: replay and inspection for the admin API.
#[derive(Clone)]
pub struct Delivery {
    dead_letters: dead_letter::Store,
    backlogs: Arc<DashMap<String, Arc<Backlog>>>,
    log: Log,
}

impl Delivery {
    /// Starts the supervisor; it stops its workers (which save their cursors) when
    /// `shutdown` is cancelled.
    pub fn spawn(
        log: Log,
        store: catalog::Live,
        network: Network,
        shutdown: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let delivery = Self {
            dead_letters: dead_letter::Store::new(dead_letter_dir(log.dir())),
            backlogs: Arc::new(DashMap::new()),
            log: log.clone(),
        };
        // Destinations in the catalog at start-up get their cursors now, before the
        // gateway accepts a request, so none of those requests can slip past them.
        // Their senders are built now too, so a dead-letter replay asked for the moment
        // the instance is ready finds them (the supervisor starts their workers with
        // these same senders).
        let mut prepared = HashMap::new();
        for d in store.snapshot().destinations() {
            // An unusable cursor is reported (and held at the start) by the worker.
            let _ = local::start_cursor(&log, &d.id);
            // A sender that cannot be built is reported by the supervisor.
            if let Ok(sink) = sink::build(d, &network) {
                delivery.dead_letters.running(&d.id, Arc::clone(&sink));
                prepared.insert(d.id.clone(), (Arc::clone(d), sink));
            }
        }
        let readings = LocalReadings {
            log,
            backlogs: Arc::clone(&delivery.backlogs),
        };
        let task = tokio::spawn(supervisor::supervise(
            readings,
            store,
            network,
            delivery.dead_letters.clone(),
            prepared,
            shutdown,
        ));
        (delivery, task)
    }

    /// Sets every running destination's lag gauges from its backlog and the log's end
    /// now; the admin listener calls it at every scrape of `/metrics`.
    pub fn report_lag(&self) {
        let next = self.log.next_offset();
        let now = chrono::Utc::now();
        for entry in self.backlogs.iter() {
            let (events, seconds) = entry.value().lag(next, now);
            let metrics = metrics_for(entry.key());
            metrics.lag_events.set(events as f64);
            metrics.lag_seconds.set(seconds);
        }
    }

    /// The dead-letter store its workers write to.
    pub fn dead_letters(&self) -> &dead_letter::Store {
        &self.dead_letters
    }
}

/// The local log's readings: each destination reads from its saved cursor, and its
/// backlog is kept where a scrape reads it.
#[derive(Clone)]
struct LocalReadings {
    log: Log,
    backlogs: Arc<DashMap<String, Arc<Backlog>>>,
}

impl supervisor::Readings for LocalReadings {
    type Reading = local::Local;
    type Mark = u64;
    const WATCH_EVERY: Duration = Duration::from_millis(200);

    fn mark(&self) -> u64 {
        self.log.next_offset()
    }

    async fn open(&self, id: &str, since: u64, stop: &CancellationToken) -> Option<local::Local> {
        let backlog = Arc::new(Backlog::default());
        self.backlogs.insert(id.to_owned(), Arc::clone(&backlog));
        local::Local::open(&self.log, id, since, backlog, stop).await
    }

    fn stopped(&self, id: &str, left: bool) {
        self.backlogs.remove(id);
        if left {
            local::Local::forget(&self.log, id);
        }
    }
}

/// The destination's rate limit as a limiter (each delivery process, and each
/// worker of the local log, applies it to its own sends).
pub(crate) fn limiter_for(destination: &Destination) -> Option<governor::DefaultDirectRateLimiter> {
    let limit = destination.rate_limit?;
    let per_second = std::num::NonZeroU32::new(limit.per_second)?;
    let burst = std::num::NonZeroU32::new(limit.burst).unwrap_or(per_second);
    Some(governor::RateLimiter::direct(
        governor::Quota::per_second(per_second).allow_burst(burst),
    ))
}
