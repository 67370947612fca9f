//! Keeps one delivery worker per destination of the catalog, on either log: started
//! when a destination appears, restarted when its delivery settings change, stopped
//! when it leaves (within a catalog propagation interval), and started again, after a
//! growing wait, when it ends by itself.
//!
//! What differs between the logs is behind [`Readings`]: how a destination's reading
//! opens, where a new destination starts, and what a destination that left leaves
//! behind.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dead_letter;
use super::sink::{self, Network, Sink};
use super::worker::Worker;
use crate::catalog::{self, Destination};
use crate::log::reading::Reading;

/// How a log opens its destinations' readings.
pub(crate) trait Readings: Clone + Send + Sync + 'static {
    /// A destination's reading.
    type Reading: Reading;
    /// A point of the log, taken as a catalog is read: a destination that appears in
    /// the next catalog starts there, so no event accepted once it appeared slips past
    /// it.
    type Mark: Copy + Send + 'static;
    /// How often the catalog is read.
    const WATCH_EVERY: Duration;

    /// The log's point now.
    fn mark(&self) -> Self::Mark;

    /// Opens destination `id`'s reading (a new destination from `since`), trying again
    /// while it cannot; `None` once stopped, or when it never can (said).
    fn open(
        &self,
        id: &str,
        since: Self::Mark,
        stop: &CancellationToken,
    ) -> impl Future<Output = Option<Self::Reading>> + Send;

    /// Destination `id`'s worker was stopped: it `left` the catalog, or it changed.
    fn stopped(&self, id: &str, left: bool);
}

/// A destination's sink, built before its worker starts.
pub(crate) type Prepared = HashMap<String, (Arc<Destination>, Arc<dyn Sink>)>;

/// Follows the catalog until `shutdown`, then stops every worker (each settles or gives
/// back what it holds). `prepared` are senders built at start-up, used by the workers of
/// the destinations they were built for if those have not changed.
pub(crate) async fn supervise<R: Readings>(
    readings: R,
    store: catalog::Live,
    network: Network,
    dead_letters: dead_letter::Store,
    mut prepared: Prepared,
    shutdown: CancellationToken,
) {
    let mut running = Workers::default();
    // Destinations whose settings cannot make a sink: said once until they change.
    let mut failed: HashMap<String, Arc<Destination>> = HashMap::new();
    let mut seen = readings.mark();
    loop {
        let mark = readings.mark();
        let snapshot = store.snapshot();
        for id in running.stop_changed(&snapshot).await {
            dead_letters.stopped(&id);
            readings.stopped(&id, snapshot.destination(&id).is_none());
        }
        for d in snapshot.destinations() {
            if running.contains(&d.id) || failed.get(&d.id).is_some_and(|f| same_delivery(f, d)) {
                continue;
            }
            let built = match prepared.remove(&d.id) {
                Some((before, sink)) if *before == **d => Ok(sink),
                _ => sink::build(d, &network),
            };
            let sink = match built {
                Ok(sink) => sink,
                Err(error) => {
                    tracing::error!(destination = %d.id, ?error, "destination cannot be started; fix its settings");
                    failed.insert(d.id.clone(), Arc::clone(d));
                    continue;
                }
            };
            failed.remove(&d.id);
            dead_letters.running(&d.id, Arc::clone(&sink));
            let stop = shutdown.child_token();
            let task = tokio::spawn(run(
                readings.clone(),
                seen,
                Arc::clone(d),
                sink,
                (store.clone(), dead_letters.clone(), network.clone()),
                stop.clone(),
            ));
            running.insert(d, stop, task);
        }
        // Senders built at start-up for destinations that left before their worker
        // started serve nothing.
        for (id, _) in prepared.drain() {
            if !running.contains(&id) {
                dead_letters.stopped(&id);
            }
        }
        seen = mark;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(R::WATCH_EVERY) => {}
        }
    }
    running.stop_all().await;
}

/// Opens a destination's reading and runs its worker on it.
async fn run<R: Readings>(
    readings: R,
    since: R::Mark,
    destination: Arc<Destination>,
    sink: Arc<dyn Sink>,
    (store, dead_letters, network): (catalog::Live, dead_letter::Store, Network),
    stop: CancellationToken,
) {
    let Some(reading) = readings.open(&destination.id, since, &stop).await else {
        return;
    };
    Worker::new(
        &destination,
        reading,
        sink,
        store,
        dead_letters,
        &network,
        stop,
    )
    .run()
    .await;
}

/// Whether two versions of a destination can keep the same worker (only routing
/// fields differ, which workers read from the catalog at every round).
pub(crate) fn same_delivery(a: &Destination, b: &Destination) -> bool {
    a.kind == b.kind
        && a.retry == b.retry
        && a.rate_limit == b.rate_limit
        && a.max_in_flight == b.max_in_flight
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

/// The running destination workers, by id.
/// A worker that ends by itself (its reader could not open, it panicked) is noticed
/// and started again, after a wait that doubles while it keeps ending quickly.
#[derive(Default)]
struct Workers {
    running: HashMap<String, Running>,
    ended: HashMap<String, Ended>,
}

impl Workers {
    /// Whether `id` has a worker, or had one that ended and must wait to start again.
    fn contains(&mut self, id: &str) -> bool {
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
    fn insert(
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
    async fn stop_changed(&mut self, snapshot: &catalog::Snapshot) -> Vec<String> {
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
    async fn stop_all(self) {
        for (_, r) in self.running {
            r.stop.cancel();
            let _ = r.task.await;
        }
    }
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
