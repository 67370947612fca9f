//! One destination's delivery loop: read the event log from the destination's cursor,
//! pick the events it takes, send them in batches with retries, dead-letter what
//! cannot be delivered, advance and persist the cursor.
//!
//! Invariants: the cursor only moves past an event once it was delivered, filtered
//! out, or written to the dead-letter store; the log keeps every segment at or after
//! the cursor (a hold). A slow or dead destination holds up nothing but itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::backoff::{self, Breaker, Circuit};
use super::dead_letter::{self, GiveUp};
use super::route;
use super::sink::{Blame, Outgoing, SendError, Sink};
use super::transform::{Applied, Transform};
use super::{cursor, metrics_for};
use crate::catalog::{self, Destination, FunctionDoc};
use crate::disk::Faults;
use crate::log::{Log, Reader};
use crate::telemetry;

/// Records read from the log per round.
const READ_CHUNK: usize = 1000;
/// How often the cursor is saved while events flow.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// How often a destination whose cursor cannot be read tries it again.
const CURSOR_RETRY: Duration = Duration::from_secs(10);

/// Everything a worker needs.
pub struct Worker {
    /// The destination's id.
    pub id: String,
    /// The event log.
    pub log: Log,
    /// The catalog, read for routing at every round.
    pub store: catalog::Live,
    /// The destination's sink.
    pub sink: Arc<dyn Sink>,
    /// Where cursors are saved.
    pub cursor_dir: PathBuf,
    /// Where it starts if it has no cursor yet (a new destination): the log's end when
    /// its supervisor last read a catalog without it.
    pub new_from: u64,
    /// Where dead letters go (appends never interleave with a replay).
    pub dead_letters: dead_letter::Store,
    /// Where its unsettled events start, for the lag gauges (set at each scrape).
    pub backlog: Arc<Backlog>,
    /// Where it may reach, and the program that runs its insert function if it has one.
    pub network: super::sink::Network,
    /// Stops the worker (it saves its cursor first).
    pub stop: CancellationToken,
}

/// Why events are given up on (moved to the dead-letter store).
/// The destination is failing (for `failure`) and its backlog is past `max_lag_bytes`.
fn moved_out_of_the_way(failure: &'static str, blame: Blame) -> GiveUp {
    GiveUp {
        reason: MAX_LAG,
        blame,
        detail: format!("backlog past max_lag_bytes while failing ({failure})"),
    }
}

/// Reason label of events moved out of a failing destination's way.
const MAX_LAG: &str = "max_lag";

/// How a batch ended.
enum Outcome {
    Delivered,
    /// Given up on, for a failure of this blame.
    DeadLettered(Blame),
    Stopped,
}

impl Worker {
    /// Runs until stopped or the destination leaves the catalog.
    pub async fn run(self) {
        // A new destination starts at `new_from` (its supervisor saved it as its cursor,
        // unless the disk refused); one whose cursor cannot be read holds its place (and
        // the log) until an operator acts.
        let start = loop {
            match super::start_cursor_from(&self.log, &self.id, self.new_from) {
                Ok(start) => break start,
                Err(error) => {
                    tracing::error!(destination = %self.id, %error, "delivery paused: fix or remove the cursor file (removing it starts from the log's end); the log keeps everything meanwhile");
                    if self.sleep(CURSOR_RETRY).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(destination = %self.id, cursor = start, "delivery started");
        let reader = match Reader::open(self.log.dir(), start) {
            Ok(r) => r,
            Err(error) => {
                tracing::error!(destination = %self.id, %error, "cannot read the event log; delivery stopped");
                return;
            }
        };
        if let Some(oldest) = reader.oldest().filter(|&oldest| oldest > start) {
            tracing::error!(destination = %self.id, cursor = start, oldest, lost = oldest - start, "events this destination had not read were deleted by retention; delivering from the oldest kept event");
            telemetry::DELIVERY_GAP
                .with([&self.id])
                .increment(oldest - start);
        }
        let mut appended = self.log.subscribe();
        let mut reader = Some(reader);
        let mut done_upto = start;
        let mut saved = (start, Instant::now());
        let limiter = self.limiter();
        let mut transform = Transform::new(&self.id, &self.network);
        // The last batch ended in the dead-letter store, for a failure of this blame.
        let mut failing: Option<Blame> = None;
        loop {
            // 1. Read what is new (blocking file I/O off the runtime threads).
            let Some(mut r) = reader.take() else { break };
            r.set_limit(self.log.next_offset());
            let (r, read) = match tokio::task::spawn_blocking(move || read_chunk(r)).await {
                Ok(x) => x,
                Err(_) => break,
            };
            reader = Some(r);
            let records = match read {
                Ok(records) => records,
                Err(error) => {
                    tracing::error!(destination = %self.id, %error, "event log unreadable; delivery paused");
                    if self.sleep(Duration::from_secs(5)).await {
                        break;
                    }
                    continue;
                }
            };
            if records.is_empty() {
                self.backlog.settled(done_upto);
                self.save_if_due(done_upto, &mut saved, true);
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    _ = appended.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            // 2. Route with the current catalog.
            let snapshot = self.store.snapshot();
            let Some(destination) = snapshot.destination(&self.id).cloned() else {
                tracing::info!(destination = %self.id, "destination removed from the catalog; delivery stopped");
                break;
            };
            let last = records.last().map_or(done_upto, |(o, _)| o + 1);
            let mut pending = Vec::new();
            for (offset, payload) in records {
                if let Some(out) = route::pick(&destination, offset, &payload) {
                    pending.push(out);
                }
            }
            // Until this round settles, the backlog starts at its first record, and the
            // oldest event waiting is its first one for this destination.
            self.backlog
                .waiting(done_upto, pending.first().and_then(|o| o.received_at));
            // 2b. The destination's insert function: what it answers is sent instead.
            if let Some(function) = &destination.function {
                match self
                    .transformed(&destination, function, &mut transform, pending)
                    .await
                {
                    Some(kept) => pending = kept,
                    None => break,
                }
            }
            // 3. Wait briefly for a batch to fill when the sink batches.
            let wait = self.sink.batch_wait();
            if !wait.is_zero() && pending.len() < self.sink.batch_size() && !pending.is_empty() {
                tokio::select! {
                    () = self.stop.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
            // 4. Deliver in batches, up to `max_in_flight` at once; while the destination
            //    keeps failing with a backlog past its bound, move the backlog out of the
            //    log's way instead (one destination never pins the log for the others).
            let outcome = match pending.first() {
                Some(first)
                    if let Some(blame) = failing
                        && self.over_lag(&destination, first.offset) =>
                {
                    let why = moved_out_of_the_way("still failing", blame);
                    self.dead_letter(&pending, why, 0).await
                }
                _ => {
                    let batches = split(
                        pending,
                        (self.sink.batch_size(), self.sink.batch_bytes()),
                        |o| o.event.get().len(),
                    );
                    self.deliver_all(&destination, batches, limiter.as_ref())
                        .await
                }
            };
            match outcome {
                Outcome::Stopped => break,
                Outcome::Delivered => failing = None,
                Outcome::DeadLettered(blame) => failing = Some(blame),
            }
            done_upto = last;
            self.backlog.settled(done_upto);
            self.log.hold(&self.id, done_upto);
            self.save_if_due(done_upto, &mut saved, false);
        }
        self.save(done_upto);
        tracing::info!(destination = %self.id, cursor = done_upto, "delivery stopped");
    }

    /// Runs the insert function on `pending`: answers replace events, dropped events are
    /// settled, failures go to the dead letters, and events whose handler threw
    /// `RetryError` run again after the destination's back-off until they are older than
    /// its `max_age_secs` (then they go to the dead letters too). Each retry runs the
    /// function the catalog has then: a fix deployed meanwhile takes over, and events of
    /// a function taken off are sent as they are. `None`: stopped.
    async fn transformed(
        &self,
        destination: &Destination,
        function: &Arc<FunctionDoc>,
        transform: &mut Transform,
        mut pending: Vec<Outgoing>,
    ) -> Option<Vec<Outgoing>> {
        let mut kept = Vec::with_capacity(pending.len());
        let mut round = 0u32;
        let mut function = Arc::clone(function);
        while !pending.is_empty() {
            if round > 0 {
                match self
                    .store
                    .snapshot()
                    .destination(&self.id)
                    .and_then(|d| d.function.clone())
                {
                    Some(now) => function = now,
                    None => {
                        kept.append(&mut pending);
                        break;
                    }
                }
            }
            let refs: Vec<&Outgoing> = pending.iter().collect();
            let applied = transform.apply(&function, &refs).await;
            let mut again = Vec::new();
            // Failures that read alike go to the dead letters together.
            let mut failed: Vec<(GiveUp, Vec<Outgoing>)> = Vec::new();
            for (mut o, applied) in pending.into_iter().zip(applied) {
                match applied {
                    Applied::Send(event) => {
                        o.event = event;
                        kept.push(o);
                    }
                    Applied::Dropped => {}
                    Applied::Retry(message) => again.push((o, message)),
                    Applied::Failed(reason, detail) => match failed.last_mut() {
                        Some((why, events)) if why.reason == reason && why.detail == detail => {
                            events.push(o);
                        }
                        _ => {
                            let why = GiveUp {
                                reason,
                                blame: Blame::of_function_failure(reason),
                                detail,
                            };
                            failed.push((why, vec![o]));
                        }
                    },
                }
            }
            for (why, events) in failed {
                if matches!(self.dead_letter(&events, why, 1).await, Outcome::Stopped) {
                    return None;
                }
            }
            if again.is_empty() {
                break;
            }
            let too_old = |o: &Outgoing| {
                o.received_at.is_some_and(|at| {
                    (chrono::Utc::now() - at).num_seconds() >= destination.retry.max_age_secs as i64
                })
            };
            let (given_up, retried): (Vec<_>, Vec<_>) =
                again.into_iter().partition(|(o, _)| too_old(o));
            for (o, message) in given_up {
                let why = GiveUp {
                    reason: "function_retry",
                    blame: Blame::Function,
                    detail: format!("gave up after max_age_secs: {message}"),
                };
                if matches!(
                    self.dead_letter(&[o], why, round + 1).await,
                    Outcome::Stopped
                ) {
                    return None;
                }
            }
            pending = retried.into_iter().map(|(o, _)| o).collect();
            if pending.is_empty() {
                break;
            }
            let delay = backoff::wait(&destination.retry, round, None, Duration::ZERO);
            round += 1;
            if self.sleep(delay).await {
                return None;
            }
        }
        kept.sort_by_key(|o| o.offset);
        Some(kept)
    }

    fn limiter(&self) -> Option<DefaultDirectRateLimiter> {
        super::limiter_for(self.store.snapshot().destination(&self.id)?)
    }

    async fn deliver_all(
        &self,
        destination: &Destination,
        batches: Vec<Vec<Outgoing>>,
        limiter: Option<&DefaultDirectRateLimiter>,
    ) -> Outcome {
        let in_flight = destination.max_in_flight.max(1) as usize;
        let mut outcome = Outcome::Delivered;
        for group in batches.chunks(in_flight) {
            let sends = group
                .iter()
                .map(|batch| self.deliver(destination, batch, limiter));
            for result in futures_util::future::join_all(sends).await {
                match result {
                    Outcome::Stopped => return Outcome::Stopped,
                    Outcome::DeadLettered(blame) => outcome = Outcome::DeadLettered(blame),
                    Outcome::Delivered => {}
                }
            }
        }
        outcome
    }

    /// Sends one batch until it is delivered, dead-lettered, or the worker stops.
    async fn deliver(
        &self,
        destination: &Destination,
        batch: &[Outgoing],
        limiter: Option<&DefaultDirectRateLimiter>,
    ) -> Outcome {
        let metrics = metrics_for(&self.id);
        let mut breaker = Breaker::default();
        let mut attempts = 0u32;
        let mut sent = 0usize;
        loop {
            let remaining = &batch[sent..];
            // An open circuit probes with one event instead of hammering with all.
            let circuit = breaker.state();
            let probe = if circuit == Circuit::Open {
                &remaining[..1]
            } else {
                remaining
            };
            metrics.circuit.set(if circuit == Circuit::Open {
                Circuit::HalfOpen.gauge()
            } else {
                circuit.gauge()
            });
            if let Some(limiter) = limiter {
                tokio::select! {
                    () = self.stop.cancelled() => return Outcome::Stopped,
                    () = limiter.until_ready() => {}
                }
            }
            attempts += 1;
            let sending = telemetry::Held::of(&metrics.in_flight);
            let result = self.sink.send(probe).await;
            drop(sending);
            let error = match result {
                Ok(()) => {
                    breaker.success();
                    metrics.circuit.set(Circuit::Closed.gauge());
                    super::record_delivered(&metrics, probe);
                    sent += probe.len();
                    if sent == batch.len() {
                        return Outcome::Delivered;
                    }
                    continue;
                }
                Err(error) => error,
            };
            super::count_failed(&self.id, &error);
            breaker.failure();
            let too_old = remaining
                .first()
                .and_then(|o| o.received_at)
                .is_some_and(|at| {
                    (chrono::Utc::now() - at).num_seconds() >= destination.retry.max_age_secs as i64
                });
            let over_lag = || {
                remaining
                    .first()
                    .is_some_and(|o| self.over_lag(destination, o.offset))
            };
            match error {
                SendError::Permanent {
                    reason,
                    blame,
                    detail,
                } => {
                    let why = GiveUp {
                        reason,
                        blame,
                        detail,
                    };
                    return self.dead_letter(remaining, why, attempts).await;
                }
                SendError::Retryable { reason, blame, .. } if too_old => {
                    let why = GiveUp {
                        reason,
                        blame,
                        detail: format!("gave up after max_age_secs: {reason}"),
                    };
                    return self.dead_letter(remaining, why, attempts).await;
                }
                SendError::Retryable { reason, blame, .. } if over_lag() => {
                    return self
                        .dead_letter(remaining, moved_out_of_the_way(reason, blame), attempts)
                        .await;
                }
                SendError::Retryable {
                    retry_after,
                    reason,
                    blame,
                } => {
                    metrics.retried.increment(1);
                    if breaker.state() == Circuit::Open {
                        metrics.circuit.set(Circuit::Open.gauge());
                    }
                    let age = remaining
                        .first()
                        .and_then(|o| o.received_at)
                        .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
                        .unwrap_or_default();
                    let delay = backoff::wait(
                        &destination.retry,
                        breaker.failures().saturating_sub(1),
                        retry_after,
                        age,
                    );
                    tracing::debug!(destination = %self.id, reason, blame = blame.as_str(), delay_ms = delay.as_millis() as u64, "delivery failed; retrying");
                    if self.sleep(delay).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }

    async fn dead_letter(&self, batch: &[Outgoing], why: GiveUp, attempts: u32) -> Outcome {
        let metrics = metrics_for(&self.id);
        let entries = dead_letter::entries(batch, &why, attempts);
        loop {
            let added = self
                .dead_letters
                .add(
                    &self.id,
                    &entries,
                    self.max_dead_letter_bytes(),
                    &Faults::default(),
                )
                .await;
            match added {
                Ok(()) => break,
                Err(io) => {
                    // Never drop: keep trying until the store takes them or we stop (the
                    // hold stays meanwhile: back-pressure).
                    tracing::error!(destination = %self.id, error = %io, "cannot write dead letters; the events stay in the log, retrying");
                    if self.sleep(Duration::from_secs(5)).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
        tracing::warn!(destination = %self.id, events = batch.len(), reason = why.reason, blame = why.blame.as_str(), "events dead-lettered");
        metrics.dead_lettered.increment(batch.len() as u64);
        Outcome::DeadLettered(why.blame)
    }

    /// Whether the destination's backlog from `offset` on is past its `max_lag_bytes`.
    fn over_lag(&self, destination: &Destination, offset: u64) -> bool {
        self.log.backlog_bytes(offset) > destination.retry.max_lag_bytes
    }

    fn max_dead_letter_bytes(&self) -> u64 {
        self.store
            .snapshot()
            .destination(&self.id)
            .map_or(u64::MAX, |d| d.retry.max_dead_letter_bytes)
    }

    /// Sleeps; true if the worker was stopped meanwhile.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    fn save_if_due(&self, offset: u64, saved: &mut (u64, Instant), idle: bool) {
        if offset != saved.0 && (idle || saved.1.elapsed() >= SAVE_EVERY) {
            self.save(offset);
            *saved = (offset, Instant::now());
        }
    }

    fn save(&self, offset: u64) {
        if let Err(error) = cursor::save(&self.cursor_dir, &self.id, offset) {
            tracing::warn!(destination = %self.id, %error, "cannot save the delivery cursor");
        }
    }
}

type Read = Result<Vec<(u64, Vec<u8>)>, crate::log::ReadError>;

fn read_chunk(mut reader: Reader) -> (Reader, Read) {
    let mut out = Vec::new();
    while out.len() < READ_CHUNK {
        match reader.next() {
            Some(Ok(record)) => out.push(record),
            Some(Err(e)) => return (reader, Err(e)),
            None => break,
        }
    }
    (reader, Ok(out))
}

/// Splits events into batches of at most `size` events and `bytes` bytes, `len` giving
/// an event's bytes (a single event larger than `bytes` travels alone). Both delivery
/// engines send what it makes.
pub(super) fn split<T>(
    events: Vec<T>,
    (size, bytes): (usize, usize),
    len: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut current: Vec<T> = Vec::new();
    let mut current_bytes = 0;
    for e in events {
        let len = len(&e);
        if !current.is_empty() && (current.len() >= size.max(1) || current_bytes + len > bytes) {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += len;
        current.push(e);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn out(n: usize, len: usize) -> Outgoing {
        let text = format!("\"{}\"", "x".repeat(len.saturating_sub(2)));
        Outgoing {
            offset: n as u64,
            source_id: "s".into(),
            event: RawValue::from_string(text).expect("json"),
            received_at: None,
        }
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let sizes = |b: &Vec<Vec<Outgoing>>| b.iter().map(Vec::len).collect::<Vec<_>>();
        let events = (0..7).map(|n| out(n, 10)).collect();
        assert_eq!(
            sizes(&split(events, (3, usize::MAX), |o| o.event.get().len())),
            [3, 3, 1]
        );
        let events = (0..4).map(|n| out(n, 10)).collect();
        assert_eq!(
            sizes(&split(events, (100, 25), |o| o.event.get().len())),
            [2, 2]
        );
        let events = vec![out(0, 100), out(1, 10)];
        assert_eq!(
            sizes(&split(events, (100, 50), |o| o.event.get().len())),
            [1, 1],
            "an oversized event goes alone"
        );
    }
}
