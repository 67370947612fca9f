//! The JetStream ceiling: what one publisher gets from the NATS server without Sluice.
//!
//! `tasks` concurrent "requests", each publishing `batch` messages of `bytes` bytes with
//! a unique `Nats-Msg-Id` (as the gateway does) and waiting for all their acks, on a
//! stream of its own (file storage, one replica), deleted afterwards. The compare
//! command runs it beside the Sluice JetStream scenarios: the share of this ceiling
//! that Sluice reaches is the cost of the gateway itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use crate::report::{Latency, Report};

/// What to publish.
#[derive(Debug, Clone)]
pub struct Options {
    /// NATS URL.
    pub url: String,
    /// Stream name (created, then deleted).
    pub stream: String,
    /// Seconds of publishing (at most 900).
    pub seconds: f64,
    /// Concurrent publishers.
    pub tasks: usize,
    /// Messages per round (acks awaited together).
    pub batch: usize,
    /// Bytes per message.
    pub bytes: usize,
    /// NATS connections the publishers are spread over.
    pub clients: usize,
}

/// Publishes for `seconds` and reports rounds as requests and messages as events.
pub async fn run(o: &Options) -> anyhow::Result<Report> {
    let mut contexts = Vec::new();
    for _ in 0..o.clients.max(1) {
        let client = async_nats::connect(o.url.as_str())
            .await
            .with_context(|| format!("connecting to {}", o.url))?;
        contexts.push(
            jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(5))
                .max_ack_inflight(4096)
                .backpressure_on_inflight(true)
                .build(client),
        );
    }
    let context = contexts[0].clone();
    let subject = format!("{}.events", o.stream.to_ascii_lowercase());
    context
        .create_stream(stream::Config {
            name: o.stream.clone(),
            subjects: vec![format!("{subject}.>")],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .context("creating the baseline stream")?;
    let payload = Bytes::from(vec![b'x'; o.bytes]);
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds.clamp(0.1, 900.0));
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let (rounds, messages, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..o.tasks {
        let (context, payload, subject) = (
            contexts[t % contexts.len()].clone(),
            payload.clone(),
            subject.clone(),
        );
        let (latency, rounds, messages, errors) = (
            Arc::clone(&latency),
            Arc::clone(&rounds),
            Arc::clone(&messages),
            Arc::clone(&errors),
        );
        let batch = o.batch;
        tasks.push(tokio::spawn(async move {
            let target = format!("{subject}.t{t}");
            let mut n = 0u64;
            while Instant::now() < deadline {
                let begun = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                for i in 0..batch {
                    n += 1;
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", format!("t{t}:{n}:{i}").as_str());
                    match context
                        .publish_with_headers(target.clone(), headers, payload.clone())
                        .await
                    {
                        Ok(ack) => acks.push(ack),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let mut ok = 0;
                for ack in acks {
                    if ack.await.is_ok() {
                        ok += 1;
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let micros = u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = latency.lock().await.record(micros.max(1));
                rounds.fetch_add(1, Ordering::Relaxed);
                messages.fetch_add(ok, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.context("publisher task")?;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let _ = context.delete_stream(&o.stream).await;
    let latency = latency.lock().await;
    let rounds = rounds.load(Ordering::Relaxed);
    let messages = messages.load(Ordering::Relaxed);
    Ok(Report {
        seconds: elapsed,
        requests: rounds,
        requests_per_sec: rounds as f64 / elapsed,
        events_per_sec: messages as f64 / elapsed,
        events_ok: messages,
        bytes_per_sec: (messages as f64 * o.bytes as f64) / elapsed,
        latency_ms: Latency::of(&latency),
        statuses: BTreeMap::from([(200, rounds)]),
        errors: errors.load(Ordering::Relaxed),
        pace: "closed loop".into(),
        connections: 1,
    })
}
