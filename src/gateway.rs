//! The Tracking API: routing, write-key auth, limits, body decoding, responses.
//!
//! The request path reads top to bottom in `ingest`:
//! authenticate (header) → rate limit and monthly quota → read body (bounded) → decode →
//! authenticate (body key) → normalise each message → drop duplicates → append to the
//! event log (durable) → count usage → 200. Cross-cutting work wraps it once in
//! [`handle`]: the in-flight cap (before any work, so overload costs nothing), CORS
//! headers, and the request metrics (after, so every answer is counted, refusals
//! included).

mod auth;
mod body;
mod cors;
mod dedup;
mod function;
mod listener;
mod meters;
mod probe;
mod rate;
mod response;
mod route;
mod throttle;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use http::{HeaderMap, Method, Request};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::catalog::{self, Source};
use crate::config::Config;
use crate::event::{self, Enrichment};
use crate::log::{self, EventLog};
use crate::protocols;
use crate::telemetry;
use crate::usage::{Counts, Tally};

pub use listener::{Settings as ListenerSettings, run as run_listener};
pub use probe::{alive, probe, readiness};
pub use response::json;
pub use response::{Rejection, Reply};
pub use route::Route;
pub use tls::{TlsError, acceptor as tls_acceptor};

use dedup::{Dedup, DigestSet};
use meters::Meters;
use rate::Limiters;
use response::RejectedItem;
use throttle::FailedKeys;

/// Largest `/v1/m` body (SDK client metrics are a few hundred bytes).
const CLIENT_METRICS_LIMIT: usize = 64 << 10;
/// Header naming the client behind a proxy.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Everything a request needs; shared by all connections.
pub struct State {
    config: Arc<Config>,
    catalog: catalog::Live,
    log: EventLog,
    dedup: Dedup,
    limiters: Limiters,
    in_flight: Arc<Semaphore>,
    /// The smaller budget of requests without a key in their headers.
    in_flight_keyless: Arc<Semaphore>,
    failed_keys: FailedKeys,
    meters: Meters,
    usage: Arc<Tally>,
    /// Source functions' hosts, by endpoint id (each a child process, made on first use).
    function_hosts: dashmap::DashMap<String, Arc<tokio::sync::Mutex<crate::functions::host::Host>>>,
}

impl State {
    /// Builds the shared state.
    pub fn new(config: Arc<Config>, catalog: catalog::Live, log: EventLog) -> Self {
        Self {
            meters: Meters::default(),
            dedup: Dedup::new(&config.dedup),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            in_flight_keyless: Arc::new(Semaphore::new(config.server.max_in_flight_keyless)),
            failed_keys: FailedKeys::new(config.server.max_key_failures_per_minute),
            limiters: Limiters::default(),
            usage: Arc::new(Tally::default()),
            function_hosts: dashmap::DashMap::new(),
            config,
            catalog,
            log,
        }
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// The catalog store.
    pub fn catalog(&self) -> &catalog::Live {
        &self.catalog
    }

    /// The function host of a source-function endpoint.
    fn function_host(&self, id: &str) -> Arc<tokio::sync::Mutex<crate::functions::host::Host>> {
        function::host_for(
            &self.function_hosts,
            &self.config.functions.program(),
            self.config.delivery.allow_private_destinations,
            id,
        )
    }

    /// The usage counters, for the task that reports them.
    pub fn usage(&self) -> &Arc<Tally> {
        &self.usage
    }
}

/// Why an item of a request is not stored.
enum Skip {
    /// It breaks a message rule.
    Invalid(event::ItemRejection),
    /// Its messageId was stored recently (or earlier in this request).
    Duplicate,
}

/// Answers one request on the Tracking API listener.
pub async fn handle(state: Arc<State>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let started = Instant::now();
    let route = Route::of(req.uri().path());
    let origin_headers = cors_request_headers(req.headers());
    let method = req.method().clone();
    let mut reply = match (route, &method) {
        (Route::Ingest { .. } | Route::ClientMetrics, &Method::OPTIONS) => {
            cors::preflight(req.headers())
        }
        (Route::Ingest { shape, .. }, &Method::POST) => {
            // The in-flight cap comes first so an overloaded instance spends nothing.
            // Requests with a key in their headers (checked before their body is read)
            // and those without draw on separate budgets: anonymous slow bodies can
            // never take the slots of authenticated traffic.
            // The header is decoded once, here; `ingest` checks the key it names.
            let header_key = auth::header_key(req.headers());
            let budget = if matches!(header_key, Ok(Some(_))) {
                &state.in_flight
            } else {
                &state.in_flight_keyless
            };
            match Arc::clone(budget).try_acquire_owned() {
                Ok(_permit) => {
                    let _in_flight = telemetry::Held::of(&state.meters.in_flight);
                    let result = ingest(&state, req, peer, shape, header_key).await;
                    result.unwrap_or_else(Rejection::into_reply)
                }
                Err(_) => Rejection::Overloaded.into_reply(),
            }
        }
        (Route::ClientMetrics, &Method::POST) => {
            match Arc::clone(&state.in_flight_keyless).try_acquire_owned() {
                Ok(_permit) => client_metrics(&state, req).await,
                Err(_) => Rejection::Overloaded.into_reply(),
            }
        }
        (Route::Function, &Method::POST) => {
            let path = req.uri().path().to_owned();
            match (
                route::function_id(&path),
                Arc::clone(&state.in_flight_keyless).try_acquire_owned(),
            ) {
                (Some(id), Ok(_permit)) => function::handle(&state, req, peer, id)
                    .await
                    .unwrap_or_else(Rejection::into_reply),
                (None, _) => Rejection::NotFound.into_reply(),
                (_, Err(_)) => Rejection::Overloaded.into_reply(),
            }
        }
        (Route::Function, _) => Rejection::MethodNotAllowed("POST").into_reply(),
        (Route::Settings, &Method::GET | &Method::HEAD) => settings(&state, &req, peer),
        (Route::Settings, &Method::OPTIONS) => cors::preflight(req.headers()),
        (Route::Settings, _) => Rejection::MethodNotAllowed("GET, HEAD, OPTIONS").into_reply(),
        (Route::Health | Route::Ready, &Method::GET | &Method::HEAD) => probe(&state, route),
        (Route::NotFound, _) => Rejection::NotFound.into_reply(),
        (Route::Health | Route::Ready, _) => Rejection::MethodNotAllowed("GET, HEAD").into_reply(),
        (Route::Ingest { .. } | Route::ClientMetrics, _) => {
            Rejection::MethodNotAllowed("POST, OPTIONS").into_reply()
        }
    };
    if let Some(headers) = origin_headers {
        cors::decorate(&headers, &mut reply);
    }
    state.meters.request(
        route.name(),
        reply.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    reply
}

/// The request path of every Tracking API route.
async fn ingest(
    state: &State,
    req: Request<Incoming>,
    peer: SocketAddr,
    shape: event::Shape,
    header_key: Result<Option<String>, auth::Problem>,
) -> Result<Reply, Rejection> {
    let limits = &state.config.limits;
    let (parts, body) = req.into_parts();
    let snapshot = state.catalog.snapshot();
    let now = Utc::now();

    // 1. A key in the header is checked before the body is read: a bad key costs nothing.
    //    An address that keeps presenting bad keys is stopped before any lookup.
    let ip = admitted_address(state, &parts.headers, peer)?;
    let failed = |rejection| {
        state.failed_keys.fail(ip);
        rejection
    };
    let header_key = header_key.map_err(auth_failure).map_err(failed)?;
    if let Some(key) = &header_key {
        let source = authenticate(&snapshot, key, now).map_err(failed)?;
        admit(state, source, now)?;
    }

    // 2. Read (bounded in size and time, gunzipped) and decode the body.
    let body = body::read(&parts.headers, body, limits.max_request_bytes, pace(state))
        .await
        .map_err(Rejection::Body)?;
    state.meters.body_bytes.increment(body.wire_len as u64);
    let mut bytes = body.bytes;
    let body_len = bytes.len();
    let envelope = event::decode(&mut bytes, shape, limits).map_err(Rejection::Decode)?;

    // 3. The key that counts: header and body must agree; a body-only key is checked now.
    let key = auth::resolve(header_key.as_deref(), envelope.write_key.as_deref())
        .map_err(auth_failure)
        .map_err(failed)?;
    let source = authenticate(&snapshot, &key, now).map_err(failed)?;
    if header_key.is_none() {
        admit(state, source, now)?;
    }
    store(state, source, envelope, body_len, ip, now).await
}

/// What every request that stores events ends with: each message normalised and checked
/// against `source`'s tracking plan, then all of them appended to the log (durable before
/// the 200). A source function's events come in here too.
async fn store(
    state: &State,
    source: &Source,
    envelope: event::Envelope<'_>,
    body_len: usize,
    ip: std::net::IpAddr,
    now: chrono::DateTime<Utc>,
) -> Result<Reply, Rejection> {
    let limits = &state.config.limits;
    let items = envelope.items.len() as u64;
    let tally = |counts| state.usage.count(&source.id, &source.quotas, counts);
    state
        .meters
        .events(&source.id, envelope.items.len() as u64, 0);

    // 4. Normalise each message; in a batch a bad item is listed, the rest go on.
    let enrichment = Enrichment::new(now, Some(ip), &source.id, limits);
    let mut batch = log::Batch::with_capacity(body_len + envelope.items.len() * 256);
    let mut remembered = Vec::with_capacity(envelope.items.len());
    let mut in_request = DigestSet::default();
    let mut rejected = Vec::new();
    let mut duplicates = 0u64;
    let mut blocked = 0u64;
    let mut violating = 0u64;
    let mut forwarded: Vec<(String, Vec<u8>)> = Vec::new();
    // A backend that publishes per message routes and de-duplicates by these.
    let tagging = state.log.wants_ids();
    for (index, item) in envelope.items.into_iter().enumerate() {
        let outcome = batch.record(|buf| {
            let mut prepared = event::prepare(item, envelope.kind, &envelope.defaults, &enrichment)
                .map_err(Skip::Invalid)?;
            let key = Dedup::key(&source.id, &prepared.message_id);
            if state.dedup.seen(key) || !in_request.insert(key) {
                return Err(Skip::Duplicate);
            }
            // 4b. The source's tracking plan: annotate, omit, or block (stored, not delivered).
            let mut forwards = Vec::new();
            let verdict = source.protocols.as_ref().map(|sp| {
                // Time one event in eight: the histogram keeps its shape, the clock
                // reads stay off most events.
                let meter = (index % 8 == 0).then_some(&state.meters.validation);
                enforce(
                    sp,
                    source,
                    &mut prepared,
                    &mut forwards,
                    meter,
                    &mut violating,
                )
            });
            let block = verdict.flatten();
            event::write(&prepared, block.as_deref(), &enrichment, buf).map_err(Skip::Invalid)?;
            forwarded.extend(forwards);
            let id = tagging.then(|| prepared.message_id.to_string());
            Ok((key, block.is_some(), id))
        });
        // One request may not make the log store more than this, whatever it expands to.
        if batch.byte_len() > limits.max_stored_request_bytes {
            count_rejected(&source.id, "request_too_large", 1);
            tally(Counts {
                refused: items,
                violating,
                ..Counts::default()
            });
            return Err(Rejection::StoredTooLarge {
                limit: limits.max_stored_request_bytes,
            });
        }
        match outcome {
            Ok((key, was_blocked, id)) => {
                if let Some(id) = id {
                    batch.tag(&source.id, id);
                }
                remembered.push(key);
                blocked += u64::from(was_blocked);
            }
            Err(Skip::Duplicate) => duplicates += 1,
            Err(Skip::Invalid(problem)) if envelope.kind.is_some() => {
                count_rejected(&source.id, problem.code(), 1);
                tally(Counts {
                    refused: 1,
                    violating,
                    ..Counts::default()
                });
                return Err(Rejection::Message(problem));
            }
            Err(Skip::Invalid(problem)) => {
                count_rejected(&source.id, problem.code(), 1);
                rejected.push(RejectedItem {
                    index,
                    code: problem.code(),
                    message: problem.message(),
                });
            }
        }
    }
    if duplicates > 0 {
        telemetry::counter(
            telemetry::EVENTS_DEDUPLICATED,
            &[(telemetry::LABEL_SOURCE, source.id.clone())],
        )
        .increment(duplicates);
    }

    let stored = remembered.len() as u64;
    for (target, event) in forwarded {
        let _ = batch.record(|buf| {
            event::write_forwarded(&target, &event, buf);
            Ok::<(), ()>(())
        });
        if tagging {
            // A forwarded event is named by its content: a retried request forwards the same.
            let digest = xxhash_rust::xxh3::xxh3_128(&event);
            batch.tag(&target, format!("forwarded-{digest:032x}"));
        }
    }

    // 5. Durable before 200.
    if !batch.is_empty() {
        if let Err(error) = state.log.append(batch).await {
            let reason = Rejection::Log(error).code();
            count_rejected(&source.id, reason, stored);
            tally(Counts {
                refused: stored + rejected.len() as u64,
                violating,
                ..Counts::default()
            });
            return Err(Rejection::Log(error));
        }
        state.dedup.remember(remembered);
        state.meters.events(&source.id, 0, stored - blocked);
    }
    tally(Counts {
        accepted: stored - blocked,
        refused: blocked + rejected.len() as u64,
        violating,
    });
    Ok(response::accepted(&rejected, blocked))
}

/// Applies `source`'s tracking plan to one message; returns the JSON stored with a
/// blocked event (why it was blocked), and queues forwarded copies and
/// `Violation Generated` events.
fn enforce(
    sp: &protocols::SourceProtocols,
    source: &Source,
    prepared: &mut event::Prepared<'_>,
    forwarded: &mut Vec<(String, Vec<u8>)>,
    meter: Option<&metrics::Histogram>,
    violating: &mut u64,
) -> Option<Vec<u8>> {
    let started = meter.map(|_| Instant::now());
    let review = protocols::review(sp, &source.id, prepared.kind, &mut prepared.message);
    if let (Some(meter), Some(started)) = (meter, started) {
        meter.record(started.elapsed().as_secs_f64());
    }
    if review.violations.is_empty() && review.omitted.is_empty() {
        return None;
    }
    *violating += u64::from(!review.violations.is_empty());
    use simd_json::prelude::ValueAsScalar as _;
    let name = match prepared.kind {
        event::Kind::Track => prepared
            .message
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
        _ => "",
    };
    let label = sp.plan.event_label(prepared.kind, name);
    for v in &review.violations {
        telemetry::counter(
            telemetry::PROTOCOLS_VIOLATIONS,
            &[
                (telemetry::LABEL_SOURCE, source.id.clone()),
                (telemetry::LABEL_TYPE, v.kind.into()),
                (telemetry::LABEL_EVENT, label.clone()),
            ],
        )
        .increment(1);
    }
    let omitted = review.omitted.len() + review.omitted_on_violation.len();
    if omitted > 0 {
        telemetry::counter(
            telemetry::PROTOCOLS_OMITTED,
            &[(telemetry::LABEL_SOURCE, source.id.clone())],
        )
        .increment(omitted as u64);
    }
    if let Some(target) = &sp.controls.forward_violations_to {
        for v in &review.violations {
            let from = protocols::SourceName {
                id: &source.id,
                name: &source.name,
            };
            let event = protocols::violation_event(&sp.plan, from, prepared, v);
            forwarded.push((target.clone(), event));
        }
    }
    let reason = review.blocked?;
    telemetry::counter(
        telemetry::PROTOCOLS_BLOCKED,
        &[
            (telemetry::LABEL_SOURCE, source.id.clone()),
            (telemetry::LABEL_REASON, reason.into()),
        ],
    )
    .increment(1);
    if let Some(target) = &sp.controls.forward_blocked_to {
        let mut event = Vec::new();
        // A key written twice refuses the event itself a moment later (event::write).
        if event::write_object(&prepared.message, &mut event).is_ok() {
            forwarded.push((target.clone(), event));
        }
    }
    Some(
        serde_json::to_vec(
            &serde_json::json!({ "reason": reason, "violations": review.violations }),
        )
        .unwrap_or_default(),
    )
}

fn authenticate<'s>(
    snapshot: &'s catalog::Snapshot,
    key: &str,
    now: chrono::DateTime<Utc>,
) -> Result<&'s Arc<Source>, Rejection> {
    snapshot.authenticate(key, now).map_err(|why| {
        telemetry::counter(
            telemetry::AUTH_FAILURES,
            &[(telemetry::LABEL_REASON, why.reason().into())],
        )
        .increment(1);
        Rejection::WriteKey(why)
    })
}

fn auth_failure(problem: auth::Problem) -> Rejection {
    let rejection = Rejection::Credentials(problem);
    telemetry::counter(
        telemetry::AUTH_FAILURES,
        &[(telemetry::LABEL_REASON, rejection.code().into())],
    )
    .increment(1);
    rejection
}

/// Applies the source's rate limit, then its monthly quotas.
fn admit(state: &State, source: &Source, now: chrono::DateTime<Utc>) -> Result<(), Rejection> {
    state.limiters.check(source).map_err(|retry_after| {
        telemetry::counter(
            telemetry::RATE_LIMITED,
            &[(telemetry::LABEL_SOURCE, source.id.clone())],
        )
        .increment(1);
        Rejection::RateLimited { retry_after }
    })?;
    state
        .usage
        .admit(&source.quotas, now)
        .map_err(|retry_after| {
            telemetry::counter(
                telemetry::QUOTA_EXCEEDED,
                &[(telemetry::LABEL_SOURCE, source.id.clone())],
            )
            .increment(1);
            Rejection::QuotaExceeded { retry_after }
        })
}

fn count_rejected(source: &str, reason: &'static str, n: u64) {
    telemetry::counter(
        telemetry::EVENTS_REJECTED,
        &[
            (telemetry::LABEL_SOURCE, source.to_owned()),
            (telemetry::LABEL_REASON, reason.into()),
        ],
    )
    .increment(n);
}

/// `GET /v1/projects/{writeKey}/settings`: what analytics.js loads from Segment's CDN,
/// pointing the browser SDK back at this gateway (`apiHost` from the request's Host,
/// `protocol` from whether TLS is on). Unknown, revoked or disabled keys get 401.
fn settings(state: &State, req: &Request<Incoming>, peer: SocketAddr) -> Reply {
    let Some(key) = route::settings_key(req.uri().path()) else {
        return Rejection::NotFound.into_reply();
    };
    let ip = match admitted_address(state, req.headers(), peer) {
        Ok(ip) => ip,
        Err(rejection) => return no_store(rejection.into_reply()),
    };
    if let Err(rejection) = authenticate(&state.catalog.snapshot(), key, Utc::now()) {
        state.failed_keys.fail(ip);
        return no_store(rejection.into_reply());
    }
    let server = &state.config.server;
    // The configured public URL, else the request's Host if it is a plain host name
    // or address (an arbitrary Host is never reflected into a page's script config).
    let (protocol, host) = match &server.public_url {
        Some(url) => match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_owned(), rest.trim_end_matches('/').to_owned()),
            None => ("https".to_owned(), url.trim_end_matches('/').to_owned()),
        },
        None => {
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .filter(|h| route::is_plain_host(h));
            let Some(host) = host else {
                return no_store(Rejection::InvalidHost.into_reply());
            };
            let protocol = if server.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            (protocol.to_owned(), host.to_owned())
        }
    };
    let body = serde_json::json!({
        "integrations": {
            "Segment.io": { "apiKey": key, "apiHost": format!("{host}/v1"), "protocol": protocol }
        },
        "plan": { "track": { "__default": { "enabled": true } } },
    });
    let mut reply = response::json(http::StatusCode::OK, body.to_string().into());
    reply.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    reply
}

/// Marks an answer as not to be cached (refusals must not be served from a cache).
fn no_store(mut reply: Reply) -> Reply {
    reply.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    reply
}

/// How long and how slowly a body may arrive.
fn pace(state: &State) -> body::Pace {
    body::Pace {
        timeout: state.config.body_timeout(),
        min_bytes_per_sec: state.config.server.min_body_bytes_per_sec,
    }
}

/// Client metrics (`/v1/m`): counted and dropped while they stream in, never buffered.
async fn client_metrics(state: &State, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let limit = state
        .config
        .limits
        .max_request_bytes
        .min(CLIENT_METRICS_LIMIT);
    match body::discard(&parts.headers, body, limit, pace(state)).await {
        Ok(_) => {
            telemetry::counter(telemetry::CLIENT_METRICS, &[]).increment(1);
            response::accepted(&[], 0)
        }
        Err(problem) => Rejection::Body(problem).into_reply(),
    }
}

/// The client's address: the peer, or, behind a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
/// The client's address, unless it presented too many bad keys or secrets this minute.
fn admitted_address(
    state: &State,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<IpAddr, Rejection> {
    let ip = client_ip(headers, peer.ip(), state);
    state
        .failed_keys
        .check(ip)
        .map_err(|retry_after| Rejection::KeyFailures { retry_after })?;
    Ok(ip)
}

fn client_ip(headers: &HeaderMap, peer: IpAddr, state: &State) -> IpAddr {
    let server = &state.config.server;
    if !server.is_trusted_proxy(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .find(|ip| !server.is_trusted_proxy(**ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

/// The request headers CORS needs after the request is consumed (only with an Origin).
fn cors_request_headers(headers: &HeaderMap) -> Option<HeaderMap> {
    let origin = headers.get(http::header::ORIGIN)?;
    let mut kept = HeaderMap::new();
    kept.insert(http::header::ORIGIN, origin.clone());
    Some(kept)
}
