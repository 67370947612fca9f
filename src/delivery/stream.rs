//! Delivery from JetStream (`log.backend = "jetstream"`; `sluice deliver`, or `serve`
//! with delivery on).
//!
//! One durable pull consumer per destination (`sluice-<destination id>`), explicit
//! acks: any number of delivery processes fetch from the same consumers and JetStream
//! hands each event to one of them; an event is acknowledged only once it was
//! delivered, filtered out, or written to the dead-letter store, so a process that dies
//! mid-batch leaves its events to be redelivered (at least once) after `ack_wait`.
//! A failed send is given back with a delay (negative ack with the destination's
//! back-off) and retried by whichever process fetches it next; past `retry.max_age_secs`
//! or on a permanent failure it goes to this process's dead-letter store. A new
//! destination's consumer starts with the events stored shortly before this process last
//! read a catalog without it, so it misses none accepted once it appeared.
//! Lag per destination comes from the consumer's pending count.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind, stream};
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::{Breaker, Circuit};
use super::dead_letter::{self, GiveUp};
use super::route;
use super::sink::{self, Network, Outgoing, SendError, Sink};
use super::transform::{Applied, Transform};
use super::{Workers, backoff, count_failed, limiter_for, metrics_for, record_delivered};
use crate::catalog::{self, Destination, FunctionDoc};
use crate::config;
use crate::disk::Faults;
use crate::log::jetstream as js;

/// How often the supervisor looks for catalog changes.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How long one fetch waits for events.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// Events handed out and not yet acknowledged, per destination, at most.
const MAX_ACK_PENDING: i64 = 10_000;
/// How often the lag gauges are read from the consumer.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Why delivery from JetStream could not start.
pub type StartError = js::JetStreamError;

/// The durable consumer's name for a destination.
pub fn consumer_name(destination: &str) -> String {
    format!("sluice-{}", js::token(destination))
}

/// Makes sure the stream exists and starts one worker per destination of the catalog
/// (following its changes) until `stop`, on `context`'s connection. The workers'
/// dead letters go to `dead_letters`, through which the admin listener replays them.
pub async fn spawn(
    context: jetstream::Context,
    settings: config::JetStream,
    store: catalog::Live,
    network: Network,
    dead_letters: dead_letter::Store,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    js::ensure_stream(&context, &settings).await?;
    let stream = js::open_stream(&context, &settings).await?;
    let ack_wait = Duration::from_millis(settings.redeliver_after_ms);
    Ok(tokio::spawn(supervise(
        stream,
        ack_wait,
        store,
        network,
        dead_letters,
        stop,
    )))
}

/// Makes sure every destination of the catalog has its consumer, now and whenever the
/// catalog changes (until `stop`). A gateway runs this: a destination's consumer then
/// exists before the gateway accepts an event for it, whether or not any delivery
/// process runs yet, so nothing published waits for a consumer that starts later.
pub async fn keep_consumers(
    context: jetstream::Context,
    settings: &config::JetStream,
    store: catalog::Live,
    stop: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let stream = js::open_stream(&context, settings).await?;
    let mut kept = Kept {
        ack_wait: Duration::from_millis(settings.redeliver_after_ms),
        grace: Duration::from_secs(settings.remove_consumer_after_secs),
        done: HashSet::new(),
        leaving: HashMap::new(),
        looked: std::time::SystemTime::now(),
    };
    kept.follow(&stream, &store).await;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
            kept.follow(&stream, &store).await;
        }
    }))
}

/// The consumers a gateway keeps for the catalog's destinations.
struct Kept {
    ack_wait: Duration,
    /// How long a destination stays out of the catalog before its consumer goes.
    grace: Duration,
    /// Destinations whose consumer exists (created or found).
    done: HashSet<String>,
    /// Those out of the catalog, and since when.
    leaving: HashMap<String, tokio::time::Instant>,
    /// When the catalog was last read.
    looked: std::time::SystemTime,
}

impl Kept {
    /// Creates the consumers of new destinations, and deletes those of destinations out
    /// of the catalog for longer than the grace.
    async fn follow(&mut self, stream: &stream::Stream, store: &catalog::Live) {
        let seen_without = std::mem::replace(&mut self.looked, std::time::SystemTime::now());
        let snapshot = store.snapshot();
        let now = tokio::time::Instant::now();
        self.leaving
            .retain(|id, _| snapshot.destination(id).is_none());
        for id in &self.done {
            if snapshot.destination(id).is_none() {
                self.leaving.entry(id.clone()).or_insert(now);
            }
        }
        let due: Vec<String> = self
            .leaving
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= self.grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            // Kept (and tried again next time) if JetStream could not be asked.
            if remove_consumer(stream, &id).await {
                self.done.remove(&id);
                self.leaving.remove(&id);
            }
        }
        for d in snapshot.destinations() {
            if self.done.contains(&d.id) {
                continue;
            }
            match consumer_for(stream, &d.id, self.ack_wait, seen_without).await {
                Ok(_) => {
                    self.done.insert(d.id.clone());
                }
                Err(error) => {
                    tracing::warn!(destination = %d.id, %error, "cannot create the destination's JetStream consumer; retrying");
                }
            }
        }
    }
}

/// A destination out of this gateway's catalog for the grace: its consumer is deleted
/// with the events it had not acknowledged, as the local log releases a removed destination's
/// backlog (adding it again starts with new events), counted and said loudly. False if
/// JetStream could not be asked.
async fn remove_consumer(stream: &stream::Stream, id: &str) -> bool {
    let name = consumer_name(id);
    let undelivered = stream
        .consumer_info(&name)
        .await
        .ok()
        .map(|info| info.num_pending + info.num_ack_pending as u64);
    match stream.delete_consumer(&name).await {
        Ok(_) => {}
        Err(error)
            if matches!(error.kind(), stream::ConsumerErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(error) => {
            tracing::warn!(destination = id, %error, "cannot delete the JetStream consumer of a removed destination; retrying");
            return false;
        }
    }
    crate::telemetry::DELIVERY_DESTINATIONS_REMOVED
        .with([id])
        .increment(1);
    tracing::warn!(destination = id, consumer = %name, undelivered = ?undelivered, "destination removed from the catalog: its JetStream consumer is deleted and its undelivered events will not be delivered; adding it again starts with new events (its dead letters are kept)");
    true
}

async fn supervise(
    stream: stream::Stream,
    ack_wait: Duration,
    store: catalog::Live,
    network: Network,
    dead_letters: dead_letter::Store,
    stop: CancellationToken,
) {
    let mut running = Workers::default();
    // Destinations whose settings cannot make a sink: said once until they change.
    let mut failed: HashMap<String, Arc<Destination>> = HashMap::new();
    let mut looked = std::time::SystemTime::now();
    loop {
        let seen_without = std::mem::replace(&mut looked, std::time::SystemTime::now());
        let snapshot = store.snapshot();
        for id in running.stop_changed(&snapshot).await {
            dead_letters.stopped(&id);
        }
        for d in snapshot.destinations() {
            if running.contains(&d.id) || failed.get(&d.id).is_some_and(|f| f.kind == d.kind) {
                continue;
            }
            let sink = match sink::build(d, &network) {
                Ok(sink) => sink,
                Err(error) => {
                    tracing::error!(destination = %d.id, ?error, "destination cannot be started; fix its settings");
                    failed.insert(d.id.clone(), Arc::clone(d));
                    continue;
                }
            };
            failed.remove(&d.id);
            let consumer = match consumer_for(&stream, &d.id, ack_wait, seen_without).await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(destination = %d.id, %error, "cannot open the destination's JetStream consumer; retrying");
                    continue;
                }
            };
            let worker_stop = stop.child_token();
            dead_letters.running(&d.id, Arc::clone(&sink));
            let worker = Worker {
                destination: Arc::clone(d),
                sink,
                limiter: limiter_for(d),
                consumer,
                dead_letters: dead_letters.clone(),
                transform: Transform::new(&d.id, &network),
                failures: std::sync::Mutex::default(),
                stop: worker_stop.clone(),
            };
            tracing::info!(destination = %d.id, consumer = %consumer_name(&d.id), "delivery from JetStream started");
            let lag = watch_lag(
                stream.clone(),
                worker.consumer.clone(),
                metrics_for(&d.id),
                worker_stop.clone(),
            );
            let store = store.clone();
            let task = tokio::spawn(async move {
                // The gauges live as long as the worker: its end (or panic) ends them, so
                // the supervisor sees the task finish and starts both again.
                let _lag = Aborted(tokio::spawn(lag).abort_handle());
                worker.run(store).await;
            });
            running.insert(d, worker_stop, task);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(WATCH_EVERY) => {}
        }
    }
    running.stop_all().await;
}

/// Aborts its task when dropped.
struct Aborted(tokio::task::AbortHandle);

impl Drop for Aborted {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a destination's lag gauges true until `stop`, on a task of its own so a slow
/// answer never holds up delivery (nor a stalled send the gauges): every `LAG_EVERY`,
/// the events the consumer has not acknowledged (waiting and handed out) and the age of
/// the oldest of them, the first message after the consumer's acknowledgement floor.
async fn watch_lag(
    stream: stream::Stream,
    consumer: PullConsumer,
    metrics: super::Metrics,
    stop: CancellationToken,
) {
    loop {
        let read = async {
            let mut consumer = consumer.clone();
            let info = consumer.info().await.ok()?.clone();
            let events = info.num_pending + info.num_ack_pending as u64;
            let seconds = if events == 0 {
                0.0
            } else {
                let oldest = stream
                    .get_first_raw_message_by_subject(">", info.ack_floor.stream_sequence + 1)
                    .await
                    .ok()?;
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
                let age = i128::from(now) - oldest.time.unix_timestamp_nanos();
                (age as f64 / 1e9).max(0.0)
            };
            Some((events, seconds))
        };
        let read = tokio::time::timeout(LAG_EVERY, read);
        tokio::select! {
            () = stop.cancelled() => return,
            read = read => if let Ok(Some((events, seconds))) = read {
                metrics.lag_events.set(events as f64);
                metrics.lag_seconds.set(seconds);
            },
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LAG_EVERY) => {}
        }
    }
}

/// How far before the last catalog read without it a new destination's consumer starts:
/// gateways and delivery processes read the catalog at slightly different moments, and
/// the servers' clocks may differ a little from this process's.
const APPEARED_MARGIN: Duration = Duration::from_secs(2);

/// Opens the destination's durable consumer, creating it (with `ack_wait`) if needed.
/// A new one starts with the events stored from `APPEARED_MARGIN` before `seen_without`
/// (when this process last read a catalog without the destination), so no event
/// accepted once it appeared slips past it; it may get a second or two of earlier ones.
async fn consumer_for(
    stream: &stream::Stream,
    id: &str,
    ack_wait: Duration,
    seen_without: std::time::SystemTime,
) -> Result<PullConsumer, String> {
    let name = consumer_name(id);
    let from = seen_without
        .checked_sub(APPEARED_MARGIN)
        .unwrap_or(std::time::UNIX_EPOCH)
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let start_time =
        async_nats::datetime::DateTime::from_unix_timestamp_nanos(from.as_nanos() as i128)
            .map_err(|e| e.to_string())?;
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("Sluice delivery to destination {id}")),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::ByStartTime { start_time },
                ack_wait,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())
}

/// Events fetched at once for a destination with an insert function (each may take up to
/// its time limit, 100 ms, and more when its process must be restarted).
const FUNCTION_FETCH: usize = 50;

struct Worker {
    destination: Arc<Destination>,
    sink: Arc<dyn Sink>,
    /// The destination's `rate_limit`, for this process's sends.
    limiter: Option<governor::DefaultDirectRateLimiter>,
    consumer: PullConsumer,
    dead_letters: dead_letter::Store,
    /// Runs its insert function, if it has one.
    transform: Transform,
    /// The destination's run of failed sends, shared by this worker's concurrent sends.
    failures: std::sync::Mutex<Failures>,
    stop: CancellationToken,
}

/// Consecutive failed sends and the last one's cause.
#[derive(Default)]
struct Failures {
    breaker: Breaker,
    /// The last failure's reason and blame.
    last: Option<(&'static str, sink::Blame)>,
    /// With the circuit open: when the next probe may go.
    probe_at: Option<tokio::time::Instant>,
}

/// One fetched event and what to do with it.
struct Fetched {
    message: jetstream::Message,
    outgoing: Option<Outgoing>,
    attempts: u32,
}

impl Worker {
    async fn run(mut self, store: catalog::Live) {
        let id = self.destination.id.clone();
        let metrics = metrics_for(&id);
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            // With an insert function, fetches stay small: every event of one runs before
            // any is settled, and all must settle well within the consumer's ack wait.
            let most = if self.destination.function.is_some()
                || store
                    .snapshot()
                    .destination(&id)
                    .is_some_and(|d| d.function.is_some())
            {
                FUNCTION_FETCH
            } else {
                1000
            };
            let batch = self
                .consumer
                .fetch()
                .max_messages(self.sink.batch_size().clamp(1, most))
                .expires(FETCH_WAIT)
                .messages()
                .await;
            let mut messages = match batch {
                Ok(m) => m,
                Err(error) => {
                    tracing::warn!(destination = %id, %error, "fetch from JetStream failed; retrying");
                    if self.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            let mut received = Vec::new();
            let mut failed = None;
            loop {
                let next = tokio::select! {
                    () = self.stop.cancelled() => None,
                    next = messages.next() => next,
                };
                match next {
                    None => break,
                    Some(Ok(message)) => received.push(message),
                    Some(Err(error)) => {
                        failed = Some(error);
                        break;
                    }
                }
            }
            // Routed by the catalog as it is now, after the last message arrived (a fetch
            // stays open up to FETCH_WAIT): never by one older than the catalog the
            // gateway accepted an event under, when both run in this process.
            let destination = store
                .snapshot()
                .destination(&id)
                .cloned()
                .unwrap_or_else(|| Arc::clone(&self.destination));
            let mut fetched: Vec<Fetched> = received
                .into_iter()
                .map(|message| self.prepare(&destination, message))
                .collect();
            if fetched.is_empty() {
                // A fetch that fails at once (no consumer leader during an election, say)
                // is tried again after a pause, not in a loop that starves the servers.
                if let Some(error) = failed {
                    tracing::warn!(destination = %id, %error, "fetch from JetStream failed; retrying");
                    if self.sleep(Duration::from_secs(1)).await {
                        return;
                    }
                }
                continue;
            }
            let Some(function) = &destination.function else {
                self.deliver(&destination, fetched, &metrics).await;
                continue;
            };
            // At most FUNCTION_FETCH events run before they settle, even when the
            // function was added while a larger fetch was open.
            while !fetched.is_empty() {
                let rest = fetched.split_off(fetched.len().min(FUNCTION_FETCH));
                let part = self.transformed(&destination, function, fetched).await;
                self.deliver(&destination, part, &metrics).await;
                fetched = rest;
            }
        }
    }

    /// Decodes a message; `outgoing` is `None` for what this destination does not take.
    fn prepare(&self, destination: &Destination, message: jetstream::Message) -> Fetched {
        let (attempts, offset) = message.info().map_or((1, 0), |i| {
            (
                u32::try_from(i.delivered).unwrap_or(u32::MAX),
                i.stream_sequence,
            )
        });
        let outgoing = route::pick(destination, offset, &message.payload);
        Fetched {
            message,
            outgoing,
            attempts,
        }
    }

    /// Runs the insert function on the events this destination takes: answers replace
    /// them, dropped events are acknowledged, failures go to the dead letters, and events
    /// whose handler threw `RetryError` are given back to JetStream after the back-off
    /// (to the dead letters once older than `max_age_secs`).
    async fn transformed(
        &mut self,
        destination: &Destination,
        function: &FunctionDoc,
        fetched: Vec<Fetched>,
    ) -> Vec<Fetched> {
        let refs: Vec<&Outgoing> = fetched.iter().filter_map(|f| f.outgoing.as_ref()).collect();
        let mut applied = self.transform.apply(function, &refs).await.into_iter();
        let mut out = Vec::with_capacity(fetched.len());
        for mut f in fetched {
            let Some(o) = f.outgoing.take() else {
                out.push(f);
                continue;
            };
            let age = age_of(o.received_at);
            let give_up = match applied.next() {
                Some(Applied::Send(event)) => {
                    f.outgoing = Some(Outgoing { event, ..o });
                    out.push(f);
                    continue;
                }
                Some(Applied::Dropped) => {
                    ack(&f.message, AckKind::Ack).await;
                    continue;
                }
                Some(Applied::Retry(message))
                    if age.as_secs() >= destination.retry.max_age_secs =>
                {
                    (
                        "function_retry",
                        format!("gave up after max_age_secs: {message}"),
                    )
                }
                Some(Applied::Retry(_)) => {
                    let delay =
                        backoff::wait(&destination.retry, f.attempts.saturating_sub(1), None, age);
                    ack(&f.message, AckKind::Nak(Some(delay))).await;
                    continue;
                }
                Some(Applied::Failed(reason, detail)) => (reason, detail),
                None => ("function_host", "no answer".to_owned()),
            };
            let (reason, detail) = give_up;
            let why = GiveUp {
                reason,
                blame: sink::Blame::of_function_failure(reason),
                detail,
            };
            f.outgoing = Some(o);
            self.bury(destination, std::slice::from_ref(&f), &why).await;
        }
        out
    }

    /// Moves events to the dead-letter store (one append) and acknowledges them; if the
    /// store refuses (full, I/O), gives them back to JetStream instead: never dropped.
    async fn bury(&self, destination: &Destination, fetched: &[Fetched], why: &GiveUp) {
        let outgoing: Vec<Outgoing> = fetched.iter().filter_map(|f| f.outgoing.clone()).collect();
        let attempts = fetched.iter().map(|f| f.attempts).max().unwrap_or(1);
        let kind = if self
            .dead_letter(destination, &outgoing, why, attempts)
            .await
        {
            metrics_for(&destination.id)
                .dead_lettered
                .increment(outgoing.len() as u64);
            AckKind::Ack
        } else {
            AckKind::Nak(Some(Duration::from_secs(30)))
        };
        for f in fetched {
            ack(&f.message, kind).await;
        }
    }

    /// With the circuit open (`backoff::OPEN_AFTER` failed sends in a row), as on the
    /// local log: one event goes out as a probe once per back-off, and the others wait
    /// (given back to JetStream until the next probe is due) or, past `max_age_secs`, go
    /// to the dead-letter store together with the last failure's cause. Closed: all go
    /// out.
    async fn probe_if_open(
        &self,
        destination: &Destination,
        mut wanted: Vec<Fetched>,
        metrics: &super::Metrics,
    ) -> Vec<Fetched> {
        let now = tokio::time::Instant::now();
        let (probing, wait, (reason, blame)) = {
            let mut f = self.failures();
            // Open only after failures, each of which records its cause.
            let (Circuit::Open, Some(last)) = (f.breaker.state(), f.last) else {
                return wanted;
            };
            match f.probe_at.filter(|&at| at > now) {
                Some(at) => (false, at - now, last),
                None => {
                    // This fetch sends the probe; the next one is due after the back-off.
                    let wait =
                        backoff::delay(&destination.retry, f.breaker.failures().saturating_sub(1));
                    f.probe_at = Some(now + wait);
                    (true, wait, last)
                }
            }
        };
        let held = if probing {
            metrics.circuit.set(Circuit::HalfOpen.gauge());
            wanted.split_off(wanted.len().min(1))
        } else {
            std::mem::take(&mut wanted)
        };
        let max_age = Duration::from_secs(destination.retry.max_age_secs);
        let mut aged = Vec::new();
        for f in held {
            let age = age_of(f.outgoing.as_ref().and_then(|o| o.received_at));
            if age >= max_age {
                aged.push(f);
            } else {
                // Never past the moment it reaches max_age_secs (then dead-lettered).
                let delay = wait.min(max_age - age).max(Duration::from_millis(1));
                ack(&f.message, AckKind::Nak(Some(delay))).await;
            }
        }
        if !aged.is_empty() {
            let why = GiveUp {
                reason,
                blame,
                detail: format!("gave up after max_age_secs: {reason}"),
            };
            self.bury(destination, &aged, &why).await;
        }
        wanted
    }

    /// Records a send's outcome in the breaker and its gauge. Only failures that may pass
    /// by retrying count: events a destination refuses as they are say nothing about
    /// whether it is up (and must not let one source's bad events hold back the others').
    fn record_outcome(&self, error: Option<&SendError>, metrics: &super::Metrics) {
        let mut f = self.failures();
        match error {
            None => {
                f.breaker.success();
                f.probe_at = None;
            }
            Some(error @ SendError::Retryable { .. }) => {
                f.breaker.failure();
                f.last = Some((error.reason(), error.blame()));
            }
            Some(SendError::Permanent { .. }) => {}
        }
        metrics.circuit.set(f.breaker.state().gauge());
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn deliver(
        &self,
        destination: &Destination,
        fetched: Vec<Fetched>,
        metrics: &super::Metrics,
    ) {
        let (wanted, skipped): (Vec<_>, Vec<_>) =
            fetched.into_iter().partition(|f| f.outgoing.is_some());
        for f in skipped {
            ack(&f.message, AckKind::Ack).await;
        }
        let wanted = self.probe_if_open(destination, wanted, metrics).await;
        // Up to max_in_flight sends at once, each within the destination's count and
        // byte bounds, as with the local log.
        let bounds = (self.sink.batch_size(), self.sink.batch_bytes());
        let chunks = super::worker::split(wanted, bounds, |f| {
            f.outgoing.as_ref().map_or(0, |o| o.event.get().len())
        });
        let in_flight = destination.max_in_flight.max(1) as usize;
        for group in chunks.chunks(in_flight) {
            let sends = group
                .iter()
                .map(|chunk| self.settle(destination, chunk, metrics));
            futures_util::future::join_all(sends).await;
        }
    }

    /// Sends one chunk (paced by the destination's rate limit) and settles its messages:
    /// acknowledged once delivered or dead-lettered, given back with a delay otherwise.
    async fn settle(&self, destination: &Destination, chunk: &[Fetched], metrics: &super::Metrics) {
        let outgoing: Vec<Outgoing> = chunk.iter().filter_map(|f| f.outgoing.clone()).collect();
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                () = self.stop.cancelled() => {
                    // Not sent: whichever process fetches next gets them at once.
                    for f in chunk {
                        ack(&f.message, AckKind::Nak(None)).await;
                    }
                    return;
                }
                () = limiter.until_ready() => {}
            }
        }
        let sending = crate::telemetry::Held::of(&metrics.in_flight);
        let sent = self.sink.send(&outgoing).await;
        drop(sending);
        self.record_outcome(sent.as_ref().err(), metrics);
        let error = match sent {
            Ok(()) => {
                for f in chunk {
                    ack(&f.message, AckKind::Ack).await;
                }
                record_delivered(metrics, &outgoing);
                return;
            }
            Err(error) => error,
        };
        count_failed(&destination.id, &error);
        let age = age_of(outgoing.iter().filter_map(|o| o.received_at).min());
        let attempts = chunk.iter().map(|f| f.attempts).max().unwrap_or(1);
        let give_up = match &error {
            SendError::Permanent {
                reason,
                blame,
                detail,
            } => Some(GiveUp {
                reason,
                blame: *blame,
                detail: detail.clone(),
            }),
            SendError::Retryable { reason, blame, .. }
                if age.as_secs() >= destination.retry.max_age_secs =>
            {
                Some(GiveUp {
                    reason,
                    blame: *blame,
                    detail: format!("gave up after max_age_secs: {reason}"),
                })
            }
            SendError::Retryable { .. } => None,
        };
        match give_up {
            Some(why) => self.bury(destination, chunk, &why).await,
            None => {
                let retry_after = match error {
                    SendError::Retryable { retry_after, .. } => retry_after,
                    SendError::Permanent { .. } => None,
                };
                let delay = backoff::wait(
                    &destination.retry,
                    attempts.saturating_sub(1),
                    retry_after,
                    age,
                );
                metrics.retried.increment(1);
                tracing::debug!(destination = %destination.id, reason = error.reason(), blame = error.blame().as_str(), delay_ms = delay.as_millis() as u64, "delivery failed; given back to JetStream");
                for f in chunk {
                    ack(&f.message, AckKind::Nak(Some(delay))).await;
                }
            }
        }
    }

    async fn dead_letter(
        &self,
        destination: &Destination,
        batch: &[Outgoing],
        why: &GiveUp,
        attempts: u32,
    ) -> bool {
        let entries = dead_letter::entries(batch, why, attempts);
        let (reason, blame) = (why.reason, why.blame.as_str());
        let added = self
            .dead_letters
            .add(
                &destination.id,
                &entries,
                destination.retry.max_dead_letter_bytes,
                &Faults::default(),
            )
            .await;
        match added {
            Ok(()) => {
                tracing::warn!(destination = %destination.id, events = batch.len(), reason, blame, "events moved to the dead-letter store");
                true
            }
            Err(error) => {
                tracing::error!(destination = %destination.id, %error, "dead-letter store refused events; they stay in JetStream");
                false
            }
        }
    }

    /// Sleeps; true when stopped meanwhile.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(wait) => false,
        }
    }
}

/// How long ago an event was received (zero if unknown).
fn age_of(received_at: Option<chrono::DateTime<chrono::Utc>>) -> Duration {
    received_at
        .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
        .unwrap_or_default()
}

async fn ack(message: &jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // The event will be redelivered after ack_wait: at least once.
        tracing::warn!(%error, "acknowledging to JetStream failed; the event will be redelivered");
    }
}
