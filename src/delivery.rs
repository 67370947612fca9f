//! Delivery: forward each stored event to the destinations connected to its source,
//! at least once.
//!
//! A supervisor keeps one [`worker`] per destination in the catalog (started,
//! restarted with new settings, or stopped within a catalog propagation interval).
//! Each worker reads the event log with its own persisted cursor and a hold on the
//! log, so a slow or dead destination holds up only itself; when holds keep the log
//! at its byte bound, the gateway answers 503 (back-pressure), never drops.
//! Failures are retried with exponential back-off and jitter (honouring
//! `Retry-After`); permanent failures, and retryable ones past `retry.max_age_secs`,
//! go to a per-destination dead-letter store that can be replayed. Every delivered
//! event keeps its `messageId`, so a duplicate after a crash is recognisable.
//!
//! Files, under the log directory: `delivery/<id>.cursor`, `dead-letters/<id>.ndjson`.

pub mod backlog;
pub mod backoff;
pub mod cursor;
pub mod dead_letter;
pub mod route;
pub mod sink;
pub mod stream;
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

use backlog::Backlog;

use crate::catalog::{self, Destination};
use crate::log::Log;
use crate::telemetry;

pub use dead_letter::ReplayError;
pub use sink::{Blame, Network, Outgoing, SendError, Sink};

/// How often the supervisor looks for catalog changes.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// Cursor directory inside the log directory.
pub fn cursor_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("delivery")
}

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

struct Running {
    destination: Arc<Destination>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    started: tokio::time::Instant,
}

/// A worker that ended by itself: when it may start again, and how many ended quickly
/// in a row.
struct Ended {
    again_at: tokio::time::Instant,
    in_a_row: u32,
}

/// A worker that ran this long before it ended is started again at once.
const RAN_WELL: Duration = Duration::from_secs(60);
/// The longest wait before a worker that keeps ending is started again.
const MOST_RESTART_WAIT: Duration = Duration::from_secs(30);

/// The running destination workers of a supervisor (local log or JetStream), by id.
/// A worker that ends by itself (its reader could not open, it panicked) is noticed
/// and started again, after a wait that doubles while it keeps ending quickly.
#[derive(Default)]
pub(crate) struct Workers {
    running: HashMap<String, Running>,
    ended: HashMap<String, Ended>,
}

impl Workers {
    /// Whether `id` has a worker, or had one that ended and must wait to start again.
    pub(crate) fn contains(&mut self, id: &str) -> bool {
        let now = tokio::time::Instant::now();
        if let Some(r) = self.running.get(id) {
            if !r.task.is_finished() {
                return true;
            }
            let quick = now.duration_since(r.started) < RAN_WELL;
            self.running.remove(id);
            let in_a_row = match self.ended.get(id) {
                Some(e) if quick => e.in_a_row + 1,
                _ => u32::from(quick),
            };
            let wait = Duration::from_secs(1)
                .saturating_mul(1 << in_a_row.min(5))
                .min(MOST_RESTART_WAIT);
            tracing::error!(destination = %id, ?wait, "delivery worker ended by itself; starting it again");
            self.ended.insert(
                id.to_owned(),
                Ended {
                    again_at: now + wait,
                    in_a_row,
                },
            );
            return true;
        }
        self.ended.get(id).is_some_and(|e| now < e.again_at)
    }

    /// Records the worker started for `destination`.
    pub(crate) fn insert(
        &mut self,
        destination: &Arc<Destination>,
        stop: CancellationToken,
        task: JoinHandle<()>,
    ) {
        self.running.insert(
            destination.id.clone(),
            Running {
                destination: Arc::clone(destination),
                stop,
                task,
                started: tokio::time::Instant::now(),
            },
        );
    }

    /// Stops (and waits for) the workers whose destination left `snapshot` or changed in
    /// a way a worker cannot follow; returns their ids.
    pub(crate) async fn stop_changed(&mut self, snapshot: &catalog::Snapshot) -> Vec<String> {
        let changed: Vec<String> = self
            .running
            .iter()
            .filter(|(id, r)| {
                snapshot
                    .destination(id)
                    .is_none_or(|d| !same_delivery(d, &r.destination))
            })
            .map(|(id, _)| id.clone())
            .collect();
        // Destinations that left while their ended worker waited to start again.
        let mut changed = changed;
        self.ended.retain(|id, _| {
            let stays = snapshot.destination(id).is_some();
            if !stays {
                changed.push(id.clone());
            }
            stays
        });
        for id in &changed {
            self.ended.remove(id);
            if let Some(r) = self.running.remove(id) {
                r.stop.cancel();
                let _ = r.task.await;
            }
        }
        changed
    }

    /// Stops every worker and waits for them.
    pub(crate) async fn stop_all(self) {
        for (_, r) in self.running {
            r.stop.cancel();
            let _ = r.task.await;
        }
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
            let _ = start_cursor(&log, &d.id);
            // A sender that cannot be built is reported by the supervisor.
            if let Ok(sink) = sink::build(d, &network) {
                delivery.dead_letters.running(&d.id, Arc::clone(&sink));
                prepared.insert(d.id.clone(), (Arc::clone(d), sink));
            }
        }
        let task = tokio::spawn(
            delivery
                .clone()
                .supervise(log, store, network, prepared, shutdown),
        );
        (delivery, task)
    }

    async fn supervise(
        self,
        log: Log,
        store: catalog::Live,
        network: Network,
        mut prepared: HashMap<String, (Arc<Destination>, Arc<dyn Sink>)>,
        shutdown: CancellationToken,
    ) {
        let mut running = Workers::default();
        let mut failed: HashMap<String, Arc<Destination>> = HashMap::new();
        // The log's end when the last catalog was read: a destination that appears in
        // the next one starts there (every event accepted once it appeared is after it).
        let mut seen_end = log.next_offset();
        loop {
            let end = log.next_offset();
            let snapshot = store.snapshot();
            // Stop workers whose destination left or changed.
            for id in running.stop_changed(&snapshot).await {
                self.dead_letters.stopped(&id);
                self.backlogs.remove(&id);
                if snapshot.destination(&id).is_none() {
                    forget(&log, &id);
                }
            }
            // Start workers for new or changed destinations.
            for d in snapshot.destinations() {
                if running.contains(&d.id) || failed.get(&d.id).is_some_and(|f| same_delivery(f, d))
                {
                    continue;
                }
                let built = match prepared.remove(&d.id) {
                    Some((before, sink)) if *before == **d => Ok(sink),
                    _ => sink::build(d, &network),
                };
                match built {
                    Ok(sink) => {
                        failed.remove(&d.id);
                        let _ = start_cursor_from(&log, &d.id, seen_end);
                        self.dead_letters.running(&d.id, Arc::clone(&sink));
                        let backlog = Arc::new(Backlog::default());
                        self.backlogs.insert(d.id.clone(), Arc::clone(&backlog));
                        let stop = shutdown.child_token();
                        let worker = worker::Worker {
                            id: d.id.clone(),
                            log: log.clone(),
                            store: store.clone(),
                            sink,
                            cursor_dir: cursor_dir(log.dir()),
                            new_from: seen_end,
                            dead_letters: self.dead_letters.clone(),
                            backlog,
                            network: network.clone(),
                            stop: stop.clone(),
                        };
                        running.insert(d, stop, tokio::spawn(worker.run()));
                    }
                    Err(error) => {
                        tracing::error!(destination = %d.id, ?error, "destination cannot be started; fix its settings");
                        failed.insert(d.id.clone(), Arc::clone(d));
                    }
                }
            }
            // Senders built at start-up for destinations that left before their worker
            // started serve nothing.
            for (id, _) in prepared.drain() {
                if !running.contains(&id) {
                    self.dead_letters.stopped(&id);
                }
            }
            seen_end = end;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
        }
        running.stop_all().await;
    }

    /// Sets every running destination's lag gauges from its backlog and the log's end
    /// now; the admin listener calls it at every scrape of `/metrics`.
    pub fn report_lag(&self) {
        let next = self.log.next_offset();
        let now = chrono::Utc::now();
        for entry in self.backlogs.iter() {
            entry.value().report(next, now, &metrics_for(entry.key()));
        }
    }

    /// The dead-letter store its workers write to.
    pub fn dead_letters(&self) -> &dead_letter::Store {
        &self.dead_letters
    }
}

/// The holds to place on the log before it opens (and so before retention first
/// runs): every destination of the catalog at its saved cursor, or, when its cursor
/// cannot be read, at the very start (nothing of its backlog may go). A destination
/// with no saved cursor is new and holds nothing yet.
pub fn saved_holds(log_dir: &Path, snapshot: &catalog::Snapshot) -> Vec<(String, u64)> {
    let dir = cursor_dir(log_dir);
    snapshot
        .destinations()
        .iter()
        .filter_map(|d| match cursor::load(&dir, &d.id) {
            Ok(Some(offset)) => Some((d.id.clone(), offset)),
            Ok(None) => None,
            Err(_) => Some((d.id.clone(), 0)),
        })
        .collect()
}

/// The cursor of a destination, with its hold placed on the log: the saved one
/// (clamped, with an ERROR, when it is beyond the log's end), or for a new
/// destination the log's current end, saved at once.
///
/// A cursor file that cannot be read is an error: the destination then holds the
/// whole log (nothing of its backlog is deleted) and does not deliver until an
/// operator repairs or removes the file.
pub fn start_cursor(log: &Log, id: &str) -> Result<u64, cursor::CursorError> {
    start_cursor_from(log, id, log.next_offset())
}

/// As [`start_cursor`], but a new destination starts at `new_from` (at most the log's
/// end): the log's end when the supervisor last read a catalog without it, so no event
/// accepted once it appeared slips past it.
pub(crate) fn start_cursor_from(
    log: &Log,
    id: &str,
    new_from: u64,
) -> Result<u64, cursor::CursorError> {
    let dir = cursor_dir(log.dir());
    let end = log.next_offset();
    let offset = match cursor::load(&dir, id) {
        Ok(Some(offset)) if offset > end => {
            tracing::error!(
                destination = id,
                cursor = offset,
                log_end = end,
                "delivery cursor is beyond the end of the event log (the log lost its tail); delivering from the end"
            );
            cursor_error(id, "ahead");
            save_cursor(&dir, id, end);
            end
        }
        Ok(Some(offset)) => offset,
        Ok(None) => {
            let start = new_from.min(end);
            save_cursor(&dir, id, start);
            start
        }
        Err(error) => {
            log.hold(id, 0);
            cursor_error(
                id,
                match error {
                    cursor::CursorError::Unreadable { .. } => "unreadable",
                    cursor::CursorError::Corrupt { .. } => "corrupt",
                },
            );
            return Err(error);
        }
    };
    log.hold(id, offset);
    Ok(offset)
}

/// A destination left the catalog: its backlog is released (retention may delete it),
/// its cursor deleted, so adding it again later starts with new events. Said loudly:
/// the undelivered events will not be delivered.
fn forget(log: &Log, id: &str) {
    let dir = cursor_dir(log.dir());
    let cursor = cursor::load(&dir, id).ok().flatten();
    let undelivered = cursor.map(|c| log.next_offset().saturating_sub(c));
    log.release(id);
    match std::fs::remove_file(cursor::path(&dir, id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(destination = id, %error, "cannot delete the cursor of a removed destination")
        }
    }
    telemetry::DELIVERY_DESTINATIONS_REMOVED
        .with([id])
        .increment(1);
    tracing::warn!(destination = id, undelivered = ?undelivered, "destination removed from the catalog: its undelivered events will not be delivered; adding it again starts with new events (its dead letters are kept)");
}

fn cursor_error(id: &str, reason: &'static str) {
    telemetry::DELIVERY_CURSOR_ERRORS
        .with([id, reason])
        .increment(1);
}

fn save_cursor(dir: &Path, id: &str, offset: u64) {
    if let Err(error) = cursor::save(dir, id, offset) {
        tracing::warn!(destination = id, %error, "cannot save the delivery cursor");
    }
}

/// Whether two versions of a destination can keep the same worker (only routing
/// fields differ, which workers read from the catalog at every round).
pub(crate) fn same_delivery(a: &Destination, b: &Destination) -> bool {
    a.kind == b.kind
        && a.retry == b.retry
        && a.rate_limit == b.rate_limit
        && a.max_in_flight == b.max_in_flight
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Document, Snapshot};

    fn snapshot(with_destination: bool) -> Snapshot {
        let mut text = String::from("[[sources]]\nid = \"web\"\nwrite_keys = [{ key = \"k\" }]\n");
        if with_destination {
            text.push_str(
                "[[destinations]]\nid = \"d\"\ntype = \"webhook\"\nsources = [\"web\"]\n\
                 [destinations.settings]\nurl = \"http://127.0.0.1:9/\"\n",
            );
        }
        Snapshot::try_build(1, &Document::parse(&text).expect("valid")).expect("installable")
    }

    /// Starts a worker for `d` that ends at once, and lets it end.
    async fn start_one_that_ends(workers: &mut Workers, d: &Arc<Destination>) {
        workers.insert(d, CancellationToken::new(), tokio::spawn(async {}));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_ends_by_itself_is_started_again_after_a_growing_wait() {
        let snapshot = snapshot(true);
        let d = Arc::clone(snapshot.destination("d").expect("d"));
        let mut workers = Workers::default();
        for wait in [2, 4, 8] {
            start_one_that_ends(&mut workers, &d).await;
            assert!(
                workers.contains("d"),
                "an ended worker is noticed, then waits"
            );
            tokio::time::sleep(Duration::from_millis(wait * 1000 - 100)).await;
            assert!(workers.contains("d"), "still waiting before {wait} s");
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!workers.contains("d"), "started again after {wait} s");
        }
        // One that ran well before it ended starts again after the shortest wait.
        workers.insert(
            &d,
            CancellationToken::new(),
            tokio::spawn(async {
                tokio::time::sleep(RAN_WELL * 2).await;
            }),
        );
        tokio::time::sleep(RAN_WELL * 2 + Duration::from_millis(1)).await;
        assert!(workers.contains("d"));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(!workers.contains("d"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_destination_that_leaves_while_its_worker_waits_is_reported_gone() {
        let snapshot = snapshot(true);
        let d = Arc::clone(snapshot.destination("d").expect("d"));
        let mut workers = Workers::default();
        start_one_that_ends(&mut workers, &d).await;
        assert!(workers.contains("d"));
        assert_eq!(workers.stop_changed(&self::snapshot(false)).await, ["d"]);
        assert!(!workers.contains("d"), "nothing left of it");
    }
}
