//! The event log on NATS JetStream (`log.backend = "jetstream"`).
//!
//! Each accepted event is one message on `<subject_prefix>.<source id>` with
//! `Nats-Msg-Id: <source id>:<messageId>`, so a client's retry inside the stream's
//! duplicate window is stored once. A request's publishes go out together and the
//! gateway answers 200 only after JetStream has acknowledged every one of them; the
//! publishes of concurrent requests share the connection and are bounded by
//! `max_pending_acks` outstanding acks (a request beyond it waits).
//!
//! The stream keeps events by limits (`max_age_hours`, `max_bytes`) and refuses new
//! ones when full (`discard = new`): the gateway then answers 503 with `Retry-After`,
//! never drops an older event to make room. Delivery workers read it through one
//! durable consumer per destination (`sluice deliver`). When JetStream cannot be
//! reached, publishes time out after `ack_timeout_ms` (503) and the client reconnects
//! by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use super::{AppendError, Batch};
use crate::config;
use crate::telemetry;

/// JetStream's de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// Fraction of `max_bytes` above which readiness reports not ready.
const HIGH_WATER: f64 = 0.9;
/// How often the stream's fullness is read for readiness.
const FULLNESS_EVERY: Duration = Duration::from_secs(5);
/// How often `sluice_jetstream_connected` is refreshed.
const CONNECTION_EVERY: Duration = Duration::from_secs(1);

/// Why the stream could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    /// No server answered within `connect_timeout_ms`.
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect {
        /// The configured URLs.
        url: String,
        /// The last error.
        reason: String,
    },
    /// The stream could not be created, updated or read.
    #[error("JetStream stream {stream}: {reason}")]
    Stream {
        /// Stream name.
        stream: String,
        /// JetStream's answer.
        reason: String,
    },
}

/// The stream configuration Sluice wants.
pub fn stream_config(settings: &config::JetStream) -> stream::Config {
    stream::Config {
        name: settings.stream.clone(),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::New,
        max_bytes: settings.max_bytes,
        max_age: Duration::from_secs(settings.max_age_hours * 3600),
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs),
        num_replicas: settings.replicas,
        storage: match settings.storage {
            config::JetStreamStorage::File => stream::StorageType::File,
            config::JetStreamStorage::Memory => stream::StorageType::Memory,
        },
        ..Default::default()
    }
}

/// Connects to NATS, retrying until `connect_timeout_ms`.
pub async fn connect(settings: &config::JetStream) -> Result<async_nats::Client, JetStreamError> {
    let deadline = Instant::now() + Duration::from_millis(settings.connect_timeout_ms);
    // Every listed server is a seed: the client connects to one and fails over to the
    // others (and to those the cluster tells it of).
    let urls: Vec<&str> = settings
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    loop {
        let attempt = options(settings).connect(urls.as_slice()).await;
        match attempt {
            Ok(client) => return Ok(client),
            // Waiting will not fix credentials or certificates (a rejected certificate
            // comes back as an I/O error: told apart by its text).
            Err(error)
                if matches!(
                    error.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                        | async_nats::ConnectErrorKind::Tls
                ) || error.to_string().contains("certificate") =>
            {
                return Err(JetStreamError::Connect {
                    url: settings.url.clone(),
                    reason: format!("{error} (check log.jetstream's credentials and TLS files)"),
                });
            }
            Err(error) if Instant::now() >= deadline => {
                return Err(JetStreamError::Connect {
                    url: settings.url.clone(),
                    reason: error.to_string(),
                });
            }
            Err(error) => {
                tracing::warn!(url = %settings.url, %error, "NATS not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The connection's options: credentials and TLS as configured (secrets never logged).
fn options(settings: &config::JetStream) -> async_nats::ConnectOptions {
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .name("sluice");
    if !settings.user.is_empty() {
        options =
            options.user_and_password(settings.user.clone(), settings.password.expose().to_owned());
    }
    if !settings.token.expose().is_empty() {
        options = options.token(settings.token.expose().to_owned());
    }
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    options
}

/// Creates the stream, or brings an existing one to the configured limits and replicas.
pub async fn ensure_stream(
    context: &jetstream::Context,
    settings: &config::JetStream,
) -> Result<stream::Info, JetStreamError> {
    let failed = |reason: String| JetStreamError::Stream {
        stream: settings.stream.clone(),
        reason,
    };
    // A cluster that is still electing its leader answers nothing for a while: keep
    // asking for as long as a connection is given.
    let deadline = Instant::now() + Duration::from_millis(settings.connect_timeout_ms);
    let info = loop {
        match context
            .create_or_update_stream(stream_config(settings))
            .await
        {
            Ok(info) => break info,
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(stream = %settings.stream, %error, "JetStream stream not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(failed(error.to_string())),
        }
    };
    tracing::info!(
        stream = %info.config.name,
        subjects = ?info.config.subjects,
        replicas = info.config.num_replicas,
        messages = info.state.messages,
        "JetStream stream ready"
    );
    Ok(info)
}

/// `text` as one subject token or consumer name: characters neither may hold become `_`.
pub fn token(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The subject of a source's events.
pub fn subject(prefix: &str, source_id: &str) -> String {
    format!("{prefix}.{}", token(source_id))
}

/// The stream, as configured (after [`ensure_stream`]). As there, a cluster that is
/// still placing the stream answers nothing for a while: asked again for as long as a
/// connection is given.
pub async fn open_stream(
    context: &jetstream::Context,
    settings: &config::JetStream,
) -> Result<stream::Stream, JetStreamError> {
    let deadline = Instant::now() + Duration::from_millis(settings.connect_timeout_ms);
    loop {
        match context.get_stream(&settings.stream).await {
            Ok(stream) => return Ok(stream),
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(stream = %settings.stream, %error, "JetStream stream not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => {
                return Err(JetStreamError::Stream {
                    stream: settings.stream.clone(),
                    reason: error.to_string(),
                });
            }
        }
    }
}

/// Publishes the gateway's batches; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    context: jetstream::Context,
    prefix: Arc<str>,
    ack_timeout: Duration,
    over_high_water: Arc<AtomicBool>,
    meters: Meters,
}

/// The log's metric handles (the same families as the local log's).
#[derive(Clone)]
struct Meters {
    duration: metrics::Histogram,
    records: metrics::Counter,
    full: metrics::Counter,
    errors: metrics::Counter,
}

impl Meters {
    fn new() -> Self {
        Self {
            duration: telemetry::LOG_APPEND_DURATION.with([]),
            records: telemetry::LOG_APPENDED_RECORDS.with([]),
            full: telemetry::LOG_FULL.with([]),
            errors: telemetry::LOG_WRITE_ERRORS.with([]),
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Connects, makes sure the stream exists as configured, and starts watching its
    /// fullness (until `stop`).
    pub async fn open(
        settings: &config::JetStream,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Self, JetStreamError> {
        let client = connect(settings).await?;
        let ack_timeout = Duration::from_millis(settings.ack_timeout_ms);
        let context = jetstream::ContextBuilder::new()
            .timeout(ack_timeout)
            .max_ack_inflight(settings.max_pending_acks)
            .backpressure_on_inflight(true)
            .build(client.clone());
        ensure_stream(&context, settings).await?;
        let publisher = Self {
            client,
            context,
            prefix: settings.subject_prefix.as_str().into(),
            ack_timeout,
            over_high_water: Arc::new(AtomicBool::new(false)),
            meters: Meters::new(),
        };
        spawn_connection_gauge(publisher.client.clone(), stop.clone());
        tokio::spawn(watch_fullness(
            publisher.context.clone(),
            settings.stream.clone(),
            settings.max_bytes,
            Arc::clone(&publisher.over_high_water),
            stop,
        ));
        Ok(publisher)
    }

    /// Publishes every record of the batch and waits for all their acks, for at most
    /// `ack_timeout_ms` in all (waiting for room among the outstanding acks included):
    /// past it the request is refused, and what was stored meanwhile is de-duplicated
    /// when the client retries.
    pub async fn append(&self, batch: Batch) -> Result<(), AppendError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.ack_timeout, self.publish(batch))
            .await
            .unwrap_or(Err(AppendError::Io));
        match &result {
            Ok(n) => {
                self.meters.records.increment(*n);
                self.meters.duration.record(started.elapsed().as_secs_f64());
            }
            Err(AppendError::Full) => self.meters.full.increment(1),
            Err(_) => self.meters.errors.increment(1),
        }
        result.map(|_| ())
    }

    /// [`Self::append`]'s work; the number of records acknowledged.
    async fn publish(&self, batch: Batch) -> Result<u64, AppendError> {
        let (bytes, records) = batch.into_records();
        let bytes = Bytes::from(bytes);
        let mut acks = Vec::with_capacity(records.len());
        // Records of one request share a source: its subject is built once per run.
        let mut current: Option<(String, String)> = None;
        for (range, tag) in records {
            let payload = bytes.slice(range);
            let (source, id) = tag.unwrap_or_else(|| {
                // Untagged records (none from the gateway) are named by their content.
                let digest = xxhash_rust::xxh3::xxh3_128(&payload);
                ("untagged".to_owned(), format!("{digest:032x}"))
            });
            let subject = match &current {
                Some((s, subject)) if *s == source => subject.clone(),
                _ => {
                    let subject = subject(&self.prefix, &source);
                    current = Some((source.clone(), subject.clone()));
                    subject
                }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(MSG_ID, format!("{source}:{id}").as_str());
            let ack = self
                .context
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| classify(&e.to_string(), e.kind()))?;
            acks.push(ack);
        }
        let n = acks.len() as u64;
        // `append` bounds the whole wait; each ack only needs its verdict.
        for ack in acks {
            ack.await
                .map_err(|error| classify(&error.to_string(), error.kind()))?;
        }
        Ok(n)
    }

    /// The JetStream context (for the gateway's consumer keeper).
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// Whether the client is connected to a server.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Whether the stream is above 90 % of `max_bytes` (read every few seconds).
    pub fn is_over_high_water(&self) -> bool {
        self.over_high_water.load(Ordering::Relaxed)
    }
}

/// A refused publish: full stream → [`AppendError::Full`]; anything else (no server,
/// no ack in time, no stream) → [`AppendError::Io`]. Both answer 503 + Retry-After.
fn classify(text: &str, kind: jetstream::context::PublishErrorKind) -> AppendError {
    let full = text.contains("maximum bytes")
        || text.contains("maximum messages")
        || text.contains("resources exceeded")
        || text.contains("insufficient resources");
    if full {
        return AppendError::Full;
    }
    tracing::warn!(?kind, error = text, "JetStream publish failed");
    AppendError::Io
}

/// Keeps `sluice_jetstream_connected` up to date for `client` until `stop`.
pub fn spawn_connection_gauge(
    client: async_nats::Client,
    stop: tokio_util::sync::CancellationToken,
) {
    let gauge = telemetry::JETSTREAM_CONNECTED.with([]);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CONNECTION_EVERY);
        loop {
            let up = client.connection_state() == async_nats::connection::State::Connected;
            gauge.set(if up { 1.0 } else { 0.0 });
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
        }
    });
}

async fn watch_fullness(
    context: jetstream::Context,
    stream: String,
    max_bytes: i64,
    over: Arc<AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(FULLNESS_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if max_bytes <= 0 {
            continue;
        }
        if let Ok(mut s) = context.get_stream(&stream).await
            && let Ok(info) = s.info().await
        {
            telemetry::LOG_BYTES.with([]).set(info.state.bytes as f64);
            let used = info.state.bytes as f64 / max_bytes as f64;
            over.store(used >= HIGH_WATER, Ordering::Relaxed);
        }
    }
}
