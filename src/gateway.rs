//! The Tracking API: routing, write-key auth, limits, body decoding, responses.
//!
//! The request path reads top to bottom in `ingest`, as phases: **admit** (the address;
//! a header key, its rate limit and quotas, before the body is read) → **decode** (the
//! body, bounded) → **authenticate** once (a body key is checked against the header's,
//! or checked and admitted if it is the only one) → **enforce** (each message normalised,
//! de-duplicated, reviewed by the tracking plan, written as a record: `intake`) →
//! **append** (durable before the 200) → **answer**. Cross-cutting work wraps it once in
//! [`handle`]: the in-flight cap (before any work, so overload costs nothing), CORS
//! headers, and the request metrics (after, so every answer is counted, refusals
//! included).

mod auth;
mod body;
mod cors;
pub(crate) mod dedup;
mod function;
mod intake;
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
use crate::event;
use crate::log::EventLog;
use crate::telemetry;
use crate::usage::Tally;

pub use listener::{Settings as ListenerSettings, run as run_listener};
pub use probe::{alive, probe, readiness};
pub use response::json;
pub use response::{Rejection, Reply};
pub use route::Route;
pub use tls::{TlsError, acceptor as tls_acceptor};

use dedup::Dedup;
use intake::Intake;
use meters::{Meters, SourceMeters};
use rate::Limiters;
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
    /// Users whose events are acknowledged and dropped.
    suppressions: Arc<crate::suppression::Suppressions>,
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
            suppressions: Arc::default(),
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

    /// The suppressed users, for the task that follows the control plane's list.
    pub fn suppressions(&self) -> &Arc<crate::suppression::Suppressions> {
        &self.suppressions
    }

    /// The usage counters, for the task that reports them.
    pub fn usage(&self) -> &Arc<Tally> {
        &self.usage
    }
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

/// The request path of every Tracking API route, phase by phase: admit → decode →
/// authenticate (once) → enforce → append → answer.
async fn ingest(
    state: &State,
    req: Request<Incoming>,
    peer: SocketAddr,
    shape: event::Shape,
    header_key: Result<Option<String>, auth::Problem>,
) -> Result<Reply, Rejection> {
    let (parts, body) = req.into_parts();
    let snapshot = state.catalog.snapshot();
    let now = Utc::now();

    // 1. Admit: the address (one that keeps presenting bad keys is stopped before any
    //    look-up), then a key in the header, checked before the body is read (a bad
    //    key costs nothing) and admitted by its source's rate limit and quotas.
    let ip = admitted_address(state, &parts.headers, peer)?;
    let gate = Gate {
        state,
        snapshot: &snapshot,
        ip,
        now,
    };
    let header_key = header_key.map_err(|problem| gate.refuse(problem))?;
    let early = match header_key.as_deref() {
        Some(key) => Some(gate.admit(key)?),
        None => None,
    };

    // 2. Decode: the body, bounded in size and time and gunzipped, parsed.
    let limits = &state.config.limits;
    let body = body::read(&parts.headers, body, limits.max_request_bytes, pace(state))
        .await
        .map_err(Rejection::Body)?;
    state.meters.body_bytes.increment(body.wire_len as u64);
    let mut bytes = body.bytes;
    let body_len = bytes.len();
    let envelope = event::decode(&mut bytes, shape, limits).map_err(Rejection::Decode)?;

    // 3. Authenticate, once: a body key must name the header's; a body-only key is
    //    checked and admitted now.
    let key = auth::resolve(header_key.as_deref(), envelope.write_key.as_deref())
        .map_err(|problem| gate.refuse(problem))?;
    let (source, meters) = match early {
        Some(admitted) => admitted,
        None => gate.admit(key)?,
    };

    // 4–6. Enforce, append, answer.
    store(state, (source, &meters), envelope, body_len, ip, now).await
}

/// Enforce, append and answer: what every request that stores events ends with (a
/// source function's events come in here too).
async fn store(
    state: &State,
    (source, meters): (&Source, &SourceMeters),
    envelope: event::Envelope<'_>,
    body_len: usize,
    ip: IpAddr,
    now: chrono::DateTime<Utc>,
) -> Result<Reply, Rejection> {
    let items = envelope.items.len();
    meters.received.increment(items as u64);
    let mut intake = Intake::new(state, source, meters, now, ip, (items, body_len));
    let mut repeating = envelope.repeating.iter().peekable();
    for (index, item) in envelope.items.into_iter().enumerate() {
        let item = match repeating.next_if_eq(&&index) {
            Some(_) => Err(event::ItemRejection::DuplicateKey),
            None => Ok(item),
        };
        intake.enforce(index, item, (envelope.kind, &envelope.defaults))?;
    }
    intake.append().await
}

/// What deciding whether a request's write key may send needs.
struct Gate<'r> {
    state: &'r State,
    snapshot: &'r catalog::Snapshot,
    ip: IpAddr,
    now: chrono::DateTime<Utc>,
}

impl<'r> Gate<'r> {
    /// The source of `key` and its meters, if the key may send now: known, live, its
    /// source enabled, within its rate limit and monthly quotas.
    fn admit(&self, key: &str) -> Result<(&'r Arc<Source>, Arc<SourceMeters>), Rejection> {
        let source = self.snapshot.authenticate(key, self.now).map_err(|why| {
            self.state.meters.auth_failures.add(why.reason(), 1);
            self.state.failed_keys.fail(self.ip);
            Rejection::WriteKey(why)
        })?;
        let meters = self.state.meters.source(self.snapshot, &source.id);
        admit(self.state, source, &meters, self.now)?;
        Ok((source, meters))
    }

    /// Refuses credentials that name no usable key.
    fn refuse(&self, problem: auth::Problem) -> Rejection {
        let rejection = Rejection::Credentials(problem);
        self.state.meters.auth_failures.add(rejection.code(), 1);
        self.state.failed_keys.fail(self.ip);
        rejection
    }
}

/// Applies the source's rate limit, then its monthly quotas.
fn admit(
    state: &State,
    source: &Source,
    meters: &SourceMeters,
    now: chrono::DateTime<Utc>,
) -> Result<(), Rejection> {
    state.limiters.check(source).map_err(|retry_after| {
        meters.rate_limited.increment(1);
        Rejection::RateLimited { retry_after }
    })?;
    state
        .usage
        .admit(&source.quotas, now)
        .map_err(|retry_after| {
            meters.quota_exceeded.increment(1);
            Rejection::QuotaExceeded { retry_after }
        })
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
    let snapshot = state.catalog.snapshot();
    let source = match snapshot.authenticate(key, Utc::now()) {
        Ok(source) => source,
        Err(why) => {
            state.meters.auth_failures.add(why.reason(), 1);
            state.failed_keys.fail(ip);
            return no_store(Rejection::WriteKey(why).into_reply());
        }
    };
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
    let mut body = serde_json::json!({
        "integrations": {
            "Segment.io": { "apiKey": key, "apiHost": format!("{host}/v1"), "protocol": protocol }
        },
        "plan": { "track": { "__default": { "enabled": true } } },
    });
    if let Some(consent) = consent_settings(&snapshot, &source.id) {
        body["consentSettings"] = consent;
    }
    let mut reply = response::json(http::StatusCode::OK, body.to_string().into());
    reply.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    reply
}

/// Segment's `consentSettings` for a source's page, when a destination it feeds carries
/// consent categories: every such category (`allCategories`), and whether some
/// destination it feeds carries none (`hasUnmappedDestinations`). analytics.js's consent
/// wrapper reads them (with none of the categories consented and no unmapped
/// destination, it does not load at all).
fn consent_settings(snapshot: &catalog::Snapshot, source_id: &str) -> Option<serde_json::Value> {
    let fed: Vec<_> = snapshot
        .destinations()
        .iter()
        .filter(|d| d.takes_from(source_id))
        .collect();
    let mut all: Vec<&str> = fed
        .iter()
        .flat_map(|d| d.consent.categories.iter().map(String::as_str))
        .collect();
    all.sort_unstable();
    all.dedup();
    (!all.is_empty()).then(|| {
        let unmapped = fed.iter().any(|d| d.consent.categories.is_empty());
        serde_json::json!({ "allCategories": all, "hasUnmappedDestinations": unmapped })
    })
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
            state.meters.client_metrics.increment(1);
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
