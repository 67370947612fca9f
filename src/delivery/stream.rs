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
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::dead_letter;
use super::metrics_for;
use super::sink::Network;
use super::supervisor::{Prepared, Readings, supervise};
use crate::catalog;
use crate::config;
use crate::log::jetstream as js;
use crate::log::reading::stopped_while;
use crate::log::reading::stream::Stream;

/// How often the supervisor looks for catalog changes.
const WATCH_EVERY: Duration = Duration::from_millis(500);
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

/// Starts delivery from JetStream on `context`'s connection until `stop`: once the stream
/// exists (made if needed), one worker per destination of the catalog, following its
/// changes. The workers' dead letters go to `dead_letters`, through which the admin
/// listener replays them.
pub fn spawn(
    context: jetstream::Context,
    settings: config::JetStream,
    store: catalog::Live,
    network: Network,
    dead_letters: dead_letter::Store,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(stream) = stream_when_ready(&context, &settings, &stop).await else {
            return;
        };
        let readings = StreamReadings {
            stream,
            ack_wait: Duration::from_millis(settings.redeliver_after_ms),
        };
        supervise(
            readings,
            store,
            network,
            dead_letters,
            Prepared::new(),
            stop,
        )
        .await;
    })
}

/// How long a delivery process waits before it asks for the stream again.
const STREAM_RETRY: Duration = Duration::from_secs(2);

/// The stream, made as configured if needed; asked again (said at every failure) while
/// it cannot be had, as a new cluster may take a while to place it: a delivery process
/// waits for it rather than exiting. `None` once stopped.
async fn stream_when_ready(
    context: &jetstream::Context,
    settings: &config::JetStream,
    stop: &CancellationToken,
) -> Option<stream::Stream> {
    loop {
        let opened = match js::ensure_stream(context, settings).await {
            Ok(_) => js::open_stream(context, settings).await,
            Err(error) => Err(error),
        };
        match opened {
            Ok(stream) => return Some(stream),
            Err(error) => {
                tracing::error!(%error, "cannot open the JetStream stream; delivery waits and tries again");
                if stopped_while(stop, STREAM_RETRY).await {
                    return None;
                }
            }
        }
    }
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

/// The JetStream log's readings: each destination reads from its durable consumer,
/// created if needed, with a task keeping its lag gauges beside it.
#[derive(Clone)]
struct StreamReadings {
    stream: stream::Stream,
    ack_wait: Duration,
}

impl Readings for StreamReadings {
    type Reading = Stream;
    type Mark = std::time::SystemTime;
    const WATCH_EVERY: Duration = WATCH_EVERY;

    fn mark(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }

    async fn open(
        &self,
        id: &str,
        since: std::time::SystemTime,
        stop: &CancellationToken,
    ) -> Option<Stream> {
        let consumer = loop {
            match consumer_for(&self.stream, id, self.ack_wait, since).await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(destination = %id, %error, "cannot open the destination's JetStream consumer; retrying");
                    if stopped_while(stop, WATCH_EVERY).await {
                        return None;
                    }
                }
            }
        };
        tracing::info!(destination = %id, consumer = %consumer_name(id), "delivery from JetStream started");
        let lag = tokio::spawn(watch_lag(
            self.stream.clone(),
            consumer.clone(),
            metrics_for(id),
            stop.clone(),
        ));
        Some(Stream::new(id, consumer, Some(lag.abort_handle())))
    }

    fn stopped(&self, _id: &str, _left: bool) {}
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
