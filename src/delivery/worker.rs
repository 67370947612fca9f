//! One destination's delivery loop, on either log: take the next events from its
//! [`Reading`], keep those the destination takes, run its insert function, send them in
//! batches, and settle every event: done once delivered, filtered out or in the
//! dead-letter store; handed out again after the back-off when its send failed.
//!
//! Sends made together (`max_in_flight`) fail or pass together: a round's failed batches,
//! and what is left of the round, go again together after one back-off. A run of failed
//! rounds opens the circuit (`backoff::OPEN_AFTER`): then one event goes out as a probe
//! once per back-off while the others wait, and events that wait past
//! `retry.max_age_secs` go to the dead-letter store together; the first success closes
//! it. Only failures that may pass by retrying count: events a destination refuses as
//! they are say nothing about whether it is up (and must not let one source's bad events
//! hold back the others').
//!
//! Invariant: an event is settled as done only once it was delivered, filtered out, or
//! written to the dead-letter store. A slow or dead destination holds up nothing but
//! itself; where the log bounds its backlog (`retry.max_lag_bytes` on the local log),
//! a destination that keeps failing moves its backlog out of the log's way, into its
//! dead letters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultDirectRateLimiter;
use metrics::Counter;
use tokio_util::sync::CancellationToken;

use super::backoff::{self, Breaker, Circuit};
use super::dead_letter::{self, GiveUp};
use super::route::{self, Skip};
use super::sink::{Blame, Network, Outgoing, SendError, Sink};
use super::transform::{Applied, Transform};
use super::{Metrics, count_failed, limiter_for, metrics_for, record_delivered};
use crate::catalog::{self, Destination, FunctionDoc};
use crate::consent::Refused;
use crate::disk::Faults;
use crate::log::reading::{Handed, Reading, Settle, stopped_while};
use crate::telemetry;

/// Events read at once, at most.
const READ_MOST: usize = 1000;
/// Events read at once for a destination with an insert function: each may take up to
/// its time limit (100 ms, and more when its process must be restarted), and all must
/// settle well within JetStream's ack wait.
const FUNCTION_READ: usize = 50;
/// Events held while the circuit is open wait at least this long (unless the probe is
/// due sooner): those reaching `max_age_secs` one after the other go to the dead-letter
/// store in groups.
const HELD_AT_LEAST: Duration = Duration::from_secs(1);
/// How long events the dead-letter store refused (full, I/O) wait before they are tried
/// again: never dropped.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);

/// Reason label of events moved out of a failing destination's way.
const MAX_LAG: &str = "max_lag";

/// The destination is failing (for `failure`) and its backlog is past `max_lag_bytes`.
fn moved_out_of_the_way(failure: &'static str, blame: Blame) -> GiveUp {
    GiveUp {
        reason: MAX_LAG,
        blame,
        detail: format!("backlog past max_lag_bytes while failing ({failure})"),
    }
}

/// One destination's delivery.
pub struct Worker<R: Reading> {
    id: String,
    reading: R,
    /// The catalog, read for routing at every round.
    store: catalog::Live,
    sink: Arc<dyn Sink>,
    dead_letters: dead_letter::Store,
    stop: CancellationToken,
    metrics: Metrics,
    /// Events withheld for want of consent, by category (made as categories appear).
    withheld: HashMap<String, Counter>,
    /// The destination's `rate_limit`, for this process's sends.
    limiter: Option<DefaultDirectRateLimiter>,
    /// Runs its insert function, if it has one.
    transform: Transform,
    failures: Failures,
    /// When this round's failed sends go again: what is left of the round waits as
    /// long.
    retry_at: Option<tokio::time::Instant>,
}

/// Consecutive failed rounds and the last one's cause.
#[derive(Default)]
struct Failures {
    breaker: Breaker,
    /// The last failure's reason and blame.
    last: Option<(&'static str, Blame)>,
    /// With the circuit open: when the next probe may go.
    probe_at: Option<tokio::time::Instant>,
}

/// One event the destination takes.
struct Fetched<T> {
    handed: Handed<T>,
    outgoing: Outgoing,
}

/// Events sent (or buried) together.
struct Chunk<T> {
    handed: Vec<Handed<T>>,
    outgoing: Vec<Outgoing>,
}

impl<T> Chunk<T> {
    fn of(fetched: Vec<Fetched<T>>) -> Self {
        let (handed, outgoing) = fetched.into_iter().map(|f| (f.handed, f.outgoing)).unzip();
        Self { handed, outgoing }
    }

    fn into_fetched(self) -> impl Iterator<Item = Fetched<T>> {
        self.handed
            .into_iter()
            .zip(self.outgoing)
            .map(|(handed, outgoing)| Fetched { handed, outgoing })
    }

    /// The most times one of its events was handed out.
    fn attempts(&self) -> u32 {
        self.handed.iter().map(|h| h.attempts).max().unwrap_or(1)
    }

    /// How long ago its oldest event was received.
    fn age(&self) -> Duration {
        age_of(self.outgoing.iter().filter_map(|o| o.received_at).min())
    }
}

impl<R: Reading> Worker<R> {
    /// A worker for `destination` on `reading`, sending through `sink`, until `stop`.
    pub fn new(
        destination: &Destination,
        reading: R,
        sink: Arc<dyn Sink>,
        store: catalog::Live,
        dead_letters: dead_letter::Store,
        network: &Network,
        stop: CancellationToken,
    ) -> Self {
        Self {
            id: destination.id.clone(),
            reading,
            store,
            sink,
            dead_letters,
            stop,
            metrics: metrics_for(&destination.id),
            withheld: HashMap::new(),
            limiter: limiter_for(destination),
            transform: Transform::new(&destination.id, network),
            failures: Failures::default(),
            retry_at: None,
        }
    }

    /// Runs until stopped or the destination leaves the catalog.
    pub async fn run(mut self) {
        loop {
            let most = self.reading.read_size(self.sendable());
            let handed = self.reading.next(most, &self.stop).await;
            if handed.is_empty() {
                break;
            }
            let caught_up = handed.len() < most;
            self.retry_at = None;
            // Routed by the catalog as it is now, after the read ended: never by one
            // older than the catalog the gateway accepted an event under, when both run
            // in this process.
            let snapshot = self.store.snapshot();
            let Some(destination) = snapshot.destination(&self.id).cloned() else {
                tracing::info!(destination = %self.id, "destination removed from the catalog; delivery stopped");
                self.reading
                    .settle(handed, Settle::Retry(Duration::ZERO))
                    .await;
                break;
            };
            let mut wanted = Vec::with_capacity(handed.len());
            let mut skipped = Vec::new();
            for handed in handed {
                match route::pick(&destination, handed.position, &handed.payload) {
                    Ok(outgoing) => wanted.push(Fetched { handed, outgoing }),
                    Err(skip) => {
                        if let Skip::Withheld(refused) = skip {
                            self.count_withheld(&destination, refused);
                        }
                        skipped.push(handed);
                    }
                }
            }
            self.reading.settle(skipped, Settle::Done).await;
            self.reading
                .waiting_since(wanted.first().and_then(|f| f.outgoing.received_at));
            match destination.function.clone() {
                None => self.deliver(&destination, wanted, caught_up).await,
                // At most FUNCTION_READ run before they settle, even when the function
                // was added while a larger read was out; with the circuit open, the
                // probe alone runs it.
                Some(function) => {
                    while !wanted.is_empty() {
                        if self.stop.is_cancelled() {
                            let handed = wanted.into_iter().map(|f| f.handed).collect();
                            self.reading
                                .settle(handed, Settle::Retry(Duration::ZERO))
                                .await;
                            break;
                        }
                        if self.held_back() {
                            self.wait_with_the_failed(&destination, wanted).await;
                            break;
                        }
                        let most = if self.circuit_open() {
                            1
                        } else {
                            FUNCTION_READ
                        };
                        let rest = wanted.split_off(wanted.len().min(most));
                        let kept = self.transformed(&destination, &function, wanted).await;
                        let last = rest.is_empty();
                        self.deliver(&destination, kept, caught_up && last).await;
                        wanted = rest;
                    }
                }
            }
        }
        self.reading.close().await;
    }

    /// Counts an event withheld from `destination` under each category it `refused`.
    fn count_withheld(&mut self, destination: &Destination, refused: Refused) {
        for category in destination.consent.named(refused) {
            if !self.withheld.contains_key(category) {
                let counter = telemetry::DELIVERY_WITHHELD.with([&self.id, category]);
                self.withheld.insert(category.to_owned(), counter);
            }
            if let Some(counter) = self.withheld.get(category) {
                counter.increment(1);
            }
        }
    }

    /// How many events one round can send at once (with an insert function, how many
    /// it runs before they settle).
    fn sendable(&self) -> usize {
        let snapshot = self.store.snapshot();
        let Some(destination) = snapshot.destination(&self.id) else {
            return 1;
        };
        let in_flight = destination.max_in_flight.max(1) as usize;
        let most = if destination.function.is_some() {
            FUNCTION_READ
        } else {
            READ_MOST
        };
        self.sink
            .batch_size()
            .saturating_mul(in_flight)
            .clamp(1, most)
    }

    /// Runs the insert function: answers replace events, dropped events are settled,
    /// failures go to the dead letters, and events whose handler threw `RetryError` are
    /// handed out again after the back-off (to the dead letters once older than
    /// `max_age_secs`). A retried event runs the function the catalog has then: a fix
    /// deployed meanwhile takes over.
    async fn transformed(
        &mut self,
        destination: &Destination,
        function: &FunctionDoc,
        fetched: Vec<Fetched<R::Ticket>>,
    ) -> Vec<Fetched<R::Ticket>> {
        let refs: Vec<&Outgoing> = fetched.iter().map(|f| &f.outgoing).collect();
        let mut applied = self.transform.apply(function, &refs).await.into_iter();
        let max_age = Duration::from_secs(destination.retry.max_age_secs);
        let mut kept = Vec::with_capacity(fetched.len());
        let mut dropped = Vec::new();
        let mut again = Vec::new();
        // Failures that read alike go to the dead letters together.
        let mut failed: Vec<(GiveUp, Vec<Fetched<R::Ticket>>)> = Vec::new();
        for mut f in fetched {
            let (reason, detail) = match applied.next() {
                Some(Applied::Send(event)) => {
                    f.outgoing.event = event;
                    kept.push(f);
                    continue;
                }
                Some(Applied::Dropped) => {
                    dropped.push(f.handed);
                    continue;
                }
                Some(Applied::Retry(message)) if age_of(f.outgoing.received_at) >= max_age => (
                    "function_retry",
                    format!("gave up after max_age_secs: {message}"),
                ),
                Some(Applied::Retry(_)) => {
                    again.push(f);
                    continue;
                }
                Some(Applied::Failed(reason, detail)) => (reason, detail),
                None => ("function_host", "no answer".to_owned()),
            };
            match failed.last_mut() {
                Some((why, events)) if why.reason == reason && why.detail == detail => {
                    events.push(f);
                }
                _ => {
                    let why = GiveUp {
                        reason,
                        blame: Blame::of_function_failure(reason),
                        detail,
                    };
                    failed.push((why, vec![f]));
                }
            }
        }
        self.reading.settle(dropped, Settle::Done).await;
        for (why, events) in failed {
            self.bury(destination, Chunk::of(events), &why).await;
        }
        if !again.is_empty() {
            let again = Chunk::of(again);
            let delay = backoff::wait(
                &destination.retry,
                again.attempts().saturating_sub(1),
                None,
                again.age(),
            );
            self.reading
                .settle(again.handed, Settle::Retry(delay))
                .await;
        }
        kept
    }

    /// Sends the events in batches, up to `max_in_flight` at once, and settles each.
    /// With the circuit open only a probe goes out, once per back-off: if it passes, the
    /// rest follow at once; otherwise they wait for the next probe (see [`Self::hold`]).
    /// `caught_up`: the read found no more events than these.
    async fn deliver(
        &mut self,
        destination: &Destination,
        mut wanted: Vec<Fetched<R::Ticket>>,
        caught_up: bool,
    ) {
        if wanted.is_empty() {
            return;
        }
        if self.circuit_open() {
            if !self.probe_due() {
                self.hold(destination, wanted).await;
                return;
            }
            let rest = wanted.split_off(1);
            self.metrics.circuit.set(Circuit::HalfOpen.gauge());
            let probe = vec![Chunk::of(wanted)];
            self.send_group(destination, probe).await;
            if self.circuit_open() {
                self.hold(destination, rest).await;
                return;
            }
            wanted = rest;
        }
        // Caught up with fewer than a batch: wait briefly, so the next read gathers more
        // (when the sink batches).
        let wait = self.sink.batch_wait();
        if caught_up
            && !wait.is_zero()
            && !wanted.is_empty()
            && wanted.len() < self.sink.batch_size()
        {
            stopped_while(&self.stop, wait).await;
        }
        let bounds = (self.sink.batch_size(), self.sink.batch_bytes());
        let mut chunks: Vec<Chunk<R::Ticket>> =
            split(wanted, bounds, |f| f.outgoing.event.get().len())
                .into_iter()
                .map(Chunk::of)
                .collect();
        let in_flight = destination.max_in_flight.max(1) as usize;
        while !chunks.is_empty() {
            let group: Vec<_> = chunks.drain(..chunks.len().min(in_flight)).collect();
            self.send_group(destination, group).await;
            if !chunks.is_empty() && self.held_back() {
                let rest = chunks.drain(..).flat_map(Chunk::into_fetched).collect();
                self.wait_with_the_failed(destination, rest).await;
                return;
            }
        }
    }

    /// Sends batches at once and settles each: done once delivered or dead-lettered,
    /// handed out again after the back-off otherwise. The group counts once in the
    /// circuit breaker (sends made together fail together): it passes if any of them
    /// passed, and fails if none did and one failed in a way that may pass by retrying.
    /// Its failed batches, and what is left of the round, go again together after one
    /// back-off (with the circuit open, when the next probe is due), so the local log
    /// keeps them in order.
    async fn send_group(&mut self, destination: &Destination, group: Vec<Chunk<R::Ticket>>) {
        let sent =
            futures_util::future::join_all(group.iter().map(|c| self.send(&c.outgoing))).await;
        let passed = sent.iter().any(|s| matches!(s, Some(Ok(()))));
        if passed {
            self.passed();
        }
        let failed = sent.iter().find_map(|s| match s {
            Some(Err(error @ SendError::Retryable { retry_after, .. })) => {
                Some((error.reason(), error.blame(), *retry_after))
            }
            _ => None,
        });
        if let Some((reason, blame, retry_after)) = failed {
            let oldest = group.iter().map(Chunk::age).max().unwrap_or_default();
            self.failed(destination, (reason, blame), retry_after, oldest, !passed);
        }
        if self.circuit_open() && self.probe_due() {
            // The probe got no verdict (refused for its settings, or not sent): the next
            // one waits a back-off too.
            let step = self.failures.breaker.failures().saturating_sub(1);
            self.failures.probe_at =
                Some(tokio::time::Instant::now() + backoff::delay(&destination.retry, step));
        }
        for (chunk, sent) in group.into_iter().zip(sent) {
            self.settle_sent(destination, chunk, sent).await;
        }
    }

    /// Sends one batch, paced by the rate limit; `None` if stopped before it went.
    async fn send(&self, outgoing: &[Outgoing]) -> Option<Result<(), SendError>> {
        if self.stop.is_cancelled() {
            return None;
        }
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = limiter.until_ready() => {}
            }
        }
        let _sending = telemetry::Held::of(&self.metrics.in_flight);
        Some(self.sink.send(outgoing).await)
    }

    /// Settles one sent batch; a retryable failure goes again with its round (at
    /// `retry_at`), or to the dead-letter store once past `max_age_secs`.
    async fn settle_sent(
        &mut self,
        destination: &Destination,
        chunk: Chunk<R::Ticket>,
        sent: Option<Result<(), SendError>>,
    ) {
        let error = match sent {
            // Not sent (stopped): handed out again at once.
            None => {
                self.reading
                    .settle(chunk.handed, Settle::Retry(Duration::ZERO))
                    .await;
                return;
            }
            Some(Ok(())) => {
                record_delivered(&self.metrics, &chunk.outgoing);
                self.reading.settle(chunk.handed, Settle::Done).await;
                return;
            }
            Some(Err(error)) => error,
        };
        count_failed(&self.id, &error);
        let (reason, blame) = (error.reason(), error.blame());
        let why = match &error {
            SendError::Permanent { detail, .. } => GiveUp {
                reason,
                blame,
                detail: detail.clone(),
            },
            SendError::Retryable { .. }
                if chunk.age().as_secs() >= destination.retry.max_age_secs =>
            {
                GiveUp {
                    reason,
                    blame,
                    detail: format!("gave up after max_age_secs: {reason}"),
                }
            }
            // Still failing (the circuit is open) with the log keeping more than
            // max_lag_bytes for it: moved out of the log's way, as held events are.
            SendError::Retryable { .. }
                if self.circuit_open()
                    && chunk
                        .handed
                        .first()
                        .is_some_and(|h| self.over_lag(destination, h.position)) =>
            {
                moved_out_of_the_way(reason, blame)
            }
            SendError::Retryable { .. } => {
                let delay = until(self.retry_at);
                self.metrics.retried.increment(1);
                tracing::debug!(destination = %self.id, reason, blame = blame.as_str(), delay_ms = delay.as_millis() as u64, "delivery failed; retrying");
                self.reading
                    .settle(chunk.handed, Settle::Retry(delay))
                    .await;
                return;
            }
        };
        self.bury(destination, chunk, &why).await;
    }

    /// A send passed: the circuit closes.
    fn passed(&mut self) {
        let f = &mut self.failures;
        f.breaker.success();
        f.probe_at = None;
        self.metrics.circuit.set(Circuit::Closed.gauge());
    }

    /// A send of a group failed in a way that may pass: the group counts in the breaker
    /// (`counts`: none of its sends passed), with its cause. Marks when this round's
    /// events go again: after the back-off (honouring `Retry-After`), and never much
    /// past the moment the oldest, now `age` old, reaches `max_age_secs`; with the
    /// circuit open, the next probe is due after the back-off too.
    fn failed(
        &mut self,
        destination: &Destination,
        cause: (&'static str, Blame),
        retry_after: Option<Duration>,
        age: Duration,
        counts: bool,
    ) {
        let f = &mut self.failures;
        if counts {
            f.breaker.failure();
            f.last = Some(cause);
        }
        let step = f.breaker.failures().saturating_sub(1);
        let now = tokio::time::Instant::now();
        // One draw of the jitter for the whole round, so its events come back together.
        let pause = backoff::wait(&destination.retry, step, retry_after, Duration::ZERO);
        if f.breaker.state() == Circuit::Open {
            // The probe is paced by the back-off alone: an event at its max age must
            // not make the next probe due at once.
            f.probe_at = Some(now + pause);
        }
        self.metrics.circuit.set(f.breaker.state().gauge());
        // An event about to reach its age does not make the round come back at once.
        let left = Duration::from_secs(destination.retry.max_age_secs).saturating_sub(age);
        let delay = pause.min(left.max(HELD_AT_LEAST));
        self.retry_at = Some(now + delay);
    }

    /// Whether what is left of this round must wait: a send of it failed, or the
    /// circuit is open and the next probe is not due.
    fn held_back(&self) -> bool {
        self.retry_at.is_some() || (self.circuit_open() && !self.probe_due())
    }

    /// What is left of a round once a send of it failed waits: for the next probe when
    /// the circuit is open (see [`Self::hold`]), else as long as the failed events, and
    /// comes back with them, in order.
    async fn wait_with_the_failed(
        &mut self,
        destination: &Destination,
        rest: Vec<Fetched<R::Ticket>>,
    ) {
        if self.retry_at.is_some() && !self.circuit_open() {
            let handed = rest.into_iter().map(|f| f.handed).collect();
            let delay = until(self.retry_at);
            self.reading.settle(handed, Settle::Retry(delay)).await;
        } else {
            self.hold(destination, rest).await;
        }
    }

    fn circuit_open(&self) -> bool {
        self.failures.breaker.state() == Circuit::Open
    }

    fn probe_due(&self) -> bool {
        self.failures
            .probe_at
            .is_none_or(|at| at <= tokio::time::Instant::now())
    }

    /// With the circuit open (the destination keeps failing), events wait for the next
    /// probe. Those past `max_age_secs` go to the dead-letter store together with the
    /// last failure's cause, and while the log keeps more than `max_lag_bytes` for the
    /// destination, all of them do (reason `max_lag`): one destination never pins the
    /// log for the others.
    async fn hold(&mut self, destination: &Destination, events: Vec<Fetched<R::Ticket>>) {
        let Some(first) = events.first() else { return };
        let (reason, blame) = self
            .failures
            .last
            .unwrap_or(("circuit_open", Blame::Destination));
        if self.over_lag(destination, first.handed.position) {
            let why = moved_out_of_the_way(reason, blame);
            self.bury(destination, Chunk::of(events), &why).await;
            return;
        }
        let max_age = Duration::from_secs(destination.retry.max_age_secs);
        let (aged, waiting): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|f| age_of(f.outgoing.received_at) >= max_age);
        if !aged.is_empty() {
            let why = GiveUp {
                reason,
                blame,
                detail: format!("gave up after max_age_secs: {reason}"),
            };
            self.bury(destination, Chunk::of(aged), &why).await;
        }
        if !waiting.is_empty() {
            // Until the next probe, or until the oldest reaches max_age_secs (then
            // dead-lettered), but at least HELD_AT_LEAST: events reaching their age one
            // after the other are buried in groups, not one round each.
            let waiting = Chunk::of(waiting);
            let until_probe = until(self.failures.probe_at);
            let until_aged = max_age.saturating_sub(waiting.age()).max(HELD_AT_LEAST);
            let delay = until_probe.min(until_aged).max(Duration::from_millis(1));
            self.reading
                .settle(waiting.handed, Settle::Retry(delay))
                .await;
        }
    }

    /// Moves events to the dead-letter store (one append) and settles them; if the
    /// store refuses (full, I/O), hands them out again later instead: never dropped
    /// (they are then routed and sent again first).
    async fn bury(&mut self, destination: &Destination, chunk: Chunk<R::Ticket>, why: &GiveUp) {
        let entries = dead_letter::entries(&chunk.outgoing, why, chunk.attempts());
        let added = self
            .dead_letters
            .add(
                &self.id,
                &entries,
                destination.retry.max_dead_letter_bytes,
                &Faults::default(),
            )
            .await;
        match added {
            Ok(()) => {
                let events = chunk.outgoing.len();
                tracing::warn!(destination = %self.id, events, reason = why.reason, blame = why.blame.as_str(), "events moved to the dead-letter store");
                self.metrics.dead_lettered.increment(events as u64);
                self.reading.settle(chunk.handed, Settle::Done).await;
            }
            Err(error) => {
                tracing::error!(destination = %self.id, %error, "the dead-letter store refused events; they stay in the log and are tried again");
                self.reading
                    .settle(chunk.handed, Settle::Retry(DEAD_LETTER_RETRY))
                    .await;
            }
        }
    }

    /// Whether the log keeps more than `max_lag_bytes` for the destination from
    /// `position` on.
    fn over_lag(&self, destination: &Destination, position: u64) -> bool {
        self.reading
            .backlog_bytes(position)
            .is_some_and(|bytes| bytes > destination.retry.max_lag_bytes)
    }
}

/// How long until `at` (zero if it has passed or is unknown).
fn until(at: Option<tokio::time::Instant>) -> Duration {
    at.map_or(Duration::ZERO, |at| {
        at.saturating_duration_since(tokio::time::Instant::now())
    })
}

/// How long ago an event was received (zero if unknown).
fn age_of(received_at: Option<chrono::DateTime<chrono::Utc>>) -> Duration {
    received_at
        .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
        .unwrap_or_default()
}

/// Splits events into batches of at most `size` events and `bytes` bytes, `len` giving
/// an event's bytes (a single event larger than `bytes` travels alone).
fn split<T>(
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
