//! The catalog as written by people (TOML) and as saved last-known-good (JSON).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::KeyDigest;
use crate::consent::{MAX_CATEGORIES, MAX_CATEGORY_CHARS, WithoutConsent};
use crate::protocols::{ControlsDoc, Enforcement, Plan, PlanDoc};

/// The whole catalog: sources with their keys, and destinations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Every source.
    #[serde(default)]
    pub sources: Vec<SourceDoc>,
    /// Every destination.
    #[serde(default)]
    pub destinations: Vec<DestinationDoc>,
    /// Tracking plans, referred to by sources.
    #[serde(default)]
    pub tracking_plans: Vec<PlanDoc>,
    /// Monthly event quotas (set in the control plane, which books the usage they count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaDoc>,
    /// Source functions: webhook endpoints whose function turns requests into events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_functions: Vec<SourceFunctionDoc>,
}

/// `[[source_functions]]`: `POST /v1/functions/{id}` on the data listener runs the
/// function's `onRequest` on the request; the events it makes take `source`'s path
/// (tracking plan, log, delivery) as if sent with its write key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFunctionDoc {
    /// The endpoint's id (in its URL).
    pub id: String,
    /// The source its events belong to.
    pub source: String,
    /// The function's id (metrics label).
    pub function: String,
    /// The version deployed (logs).
    #[serde(default)]
    pub version: u32,
    /// Its JavaScript (`async function onRequest(request, settings) { … }`).
    pub code: String,
    /// Its settings, given to `onRequest` as `settings` (may hold secrets).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// SHA-256 (hex) of the endpoint's secret, which a request presents as
    /// `Authorization: Bearer <secret>` or `?token=<secret>`.
    pub secret_sha256: String,
}

impl fmt::Debug for SourceFunctionDoc {
    /// Setting values are left out: they may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFunctionDoc")
            .field("id", &self.id)
            .field("source", &self.source)
            .field("function", &self.function)
            .field("version", &self.version)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `[[quotas]]`: events a month that the named sources may have accepted together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaDoc {
    /// The pool: `workspace:<id>` or `source:<id>`.
    pub id: String,
    /// Events a month (UTC calendar month).
    pub monthly_events: u64,
    /// The sources drawing on it.
    pub sources: Vec<String>,
}

/// `[[destinations]]`: where a source's events are forwarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDoc {
    /// Unique id (metrics label, cursor and dead-letter file names).
    pub id: String,
    /// The name an event's `integrations` object refers to; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A disabled destination receives nothing (events meanwhile are skipped).
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Ids of the sources whose events go here.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Optional per-destination filter.
    #[serde(default)]
    pub filter: FilterDoc,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryDoc,
    /// Batches in flight at once at most. Default 1.
    #[serde(default = "one")]
    pub max_in_flight: u32,
    /// Optional request rate cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDoc>,
    /// `[destinations.function]`: an insert function run on each event before the send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDoc>,
    /// Consent categories (`["Advertising"]`): an event reaches the destination only if
    /// its `context.consent.categoryPreferences` consents to every one (see
    /// [`crate::consent`]). Empty (default): no consent enforcement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consent_categories: Vec<String>,
    /// `type = "webhook" | "file" | "nats"` and its `[destinations.settings]`.
    #[serde(flatten)]
    pub kind: KindDoc,
}

/// `[destinations.function]`: the insert function a destination runs on each event
/// before the send (the control plane writes it from the deployed version).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDoc {
    /// The function's id (metrics label).
    pub id: String,
    /// The version deployed (logs).
    #[serde(default)]
    pub version: u32,
    /// Its JavaScript (`async function onTrack(event, settings) { … }`).
    pub code: String,
    /// Its settings, given to each handler as `settings` (may hold secrets).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for FunctionDoc {
    /// Setting values are left out: they may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionDoc")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("code_chars", &self.code.chars().count())
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn one() -> u32 {
    1
}

/// The destination type and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "settings", rename_all = "lowercase")]
pub enum KindDoc {
    /// POST JSON to a URL.
    Webhook(WebhookDoc),
    /// Append NDJSON to a local file.
    File(FileDoc),
    /// Publish to a NATS subject (JetStream when `jetstream = true`).
    Nats(NatsDoc),
}

/// What replaces a credential wherever settings are shown without them.
pub const REDACTED: &str = "<redacted>";

impl KindDoc {
    /// The same settings with every credential replaced: a webhook's URL path and query
    /// and user info, header values and signing secret; a NATS URL's user info and path.
    /// What people without the right to see credentials, and gateway nodes, get.
    pub fn redacted(&self) -> Self {
        match self {
            Self::Webhook(w) => Self::Webhook(WebhookDoc {
                url: redacted_url(&w.url),
                headers: w
                    .headers
                    .keys()
                    .map(|k| (k.clone(), REDACTED.to_owned()))
                    .collect(),
                secret: w.secret.as_ref().map(|_| REDACTED.to_owned()),
                ..w.clone()
            }),
            Self::Nats(n) => Self::Nats(NatsDoc {
                url: redacted_url(&n.url),
                ..n.clone()
            }),
            Self::File(f) => Self::File(f.clone()),
        }
    }
}

/// A URL as it may appear in logs, errors and dead letters: scheme, host and port only.
/// User info, path and query are dropped: webhook URLs often carry their token there
/// (`/services/T0/B0/XXXX`, `?token=…`).
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let tail = if authority.len() < rest.len() {
        "/…"
    } else {
        ""
    };
    if scheme.is_empty() {
        format!("{host}{tail}")
    } else {
        format!("{scheme}://{host}{tail}")
    }
}

/// Webhook settings. `Debug` redacts the URL's path and query, header values and the
/// signing secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDoc {
    /// Target URL (http or https).
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// When set, `X-Signature: sha256=<hex HMAC-SHA256 of the body>` is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Events per request: 1 sends the event itself, more sends `{"batch":[…]}`. Default 1.
    #[serde(default = "one_usize")]
    pub batch_size: usize,
    /// Bytes per batch request at most. Default 512000.
    #[serde(default = "batch_bytes_default")]
    pub batch_bytes: usize,
    /// How long to wait to fill a batch, in ms. Default 200.
    #[serde(default = "batch_ms_default")]
    pub batch_ms: u64,
    /// Request timeout, in ms. Default 10000.
    #[serde(default = "timeout_default")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for WebhookDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("WebhookDoc")
            .field("url", &redacted_url(&self.url))
            .field("headers", &headers)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .field("batch_bytes", &self.batch_bytes)
            .field("batch_ms", &self.batch_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn one_usize() -> usize {
    1
}
fn batch_bytes_default() -> usize {
    512_000
}
fn batch_ms_default() -> u64 {
    200
}
fn timeout_default() -> u64 {
    10_000
}

/// File settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDoc {
    /// The NDJSON file (rotated to `<path>.1`, `<path>.2`…).
    pub path: std::path::PathBuf,
    /// Rotate past this size, in bytes. Default 67108864.
    #[serde(default = "rotate_default")]
    pub rotate_bytes: u64,
    /// Rotated files kept. Default 5.
    #[serde(default = "keep_default")]
    pub keep: u32,
}

/// Why `path` cannot name a file destination's file, or `None` when it can: it must be
/// a bare file name (it is joined to `delivery.file_dir`): 1 to 128 characters of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn file_name_problem(path: &std::path::Path) -> Option<&'static str> {
    let Some(name) = path.to_str() else {
        return Some("settings.path must be UTF-8");
    };
    if name.is_empty() || name.len() > 128 {
        return Some("settings.path must be a file name of 1 to 128 characters");
    }
    if name.starts_with('.') {
        return Some("settings.path must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some(
            "settings.path must be a bare file name (A-Z, a-z, 0-9, '.', '_', '-'; no '/'): it is written inside delivery.file_dir",
        );
    }
    None
}

fn rotate_default() -> u64 {
    64 << 20
}
fn keep_default() -> u32 {
    5
}

/// NATS settings. `Debug` redacts credentials in the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsDoc {
    /// Server URL. Default `nats://127.0.0.1:4222`.
    #[serde(default = "nats_url_default")]
    pub url: String,
    /// Subject; `{source}` and `{type}` are replaced per event.
    pub subject: String,
    /// Publish through JetStream and wait for its ack (the subject must belong to a
    /// stream). Default true.
    #[serde(default = "enabled_default")]
    pub jetstream: bool,
    /// Publish timeout, in ms. Default 5000.
    #[serde(default = "nats_timeout_default")]
    pub timeout_ms: u64,
}

impl std::fmt::Debug for NatsDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsDoc")
            .field("url", &redacted_url(&self.url))
            .field("subject", &self.subject)
            .field("jetstream", &self.jetstream)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

fn nats_url_default() -> String {
    "nats://127.0.0.1:4222".to_owned()
}
fn nats_timeout_default() -> u64 {
    5000
}

/// `[destinations.filter]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterDoc {
    /// Only these call types (`track`, `identify`…); empty: all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only track events with these names; empty: all.
    #[serde(default)]
    pub event_names_allow: Vec<String>,
    /// Never track events with these names.
    #[serde(default)]
    pub event_names_deny: Vec<String>,
}

/// `[destinations.retry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDoc {
    /// First back-off, in ms (at least 1, at most `max_backoff_ms`). Default 500.
    #[serde(default = "initial_default")]
    #[schema(minimum = 1)]
    pub initial_backoff_ms: u64,
    /// Longest back-off, in ms. Default 60000.
    #[serde(default = "max_backoff_default")]
    pub max_backoff_ms: u64,
    /// Past this age (since it was received) a failing event goes to the dead-letter
    /// store, in seconds. Default 86400.
    #[serde(default = "max_age_default")]
    pub max_age_secs: u64,
    /// While the destination is failing and its backlog (bytes of the event log from its
    /// cursor on, counted by segment) is past this, its oldest events go to the
    /// dead-letter store instead of pinning the log for everyone. Default 1073741824.
    #[serde(default = "max_lag_bytes_default")]
    pub max_lag_bytes: u64,
    /// The dead-letter store of this destination holds at most this many bytes; past it,
    /// failing events stay in the log (its hold stays: back-pressure, never a drop).
    /// Default 1073741824.
    #[serde(default = "max_lag_bytes_default")]
    pub max_dead_letter_bytes: u64,
}

impl Default for RetryDoc {
    fn default() -> Self {
        Self {
            initial_backoff_ms: initial_default(),
            max_backoff_ms: max_backoff_default(),
            max_age_secs: max_age_default(),
            max_lag_bytes: max_lag_bytes_default(),
            max_dead_letter_bytes: max_lag_bytes_default(),
        }
    }
}

fn max_lag_bytes_default() -> u64 {
    1 << 30
}

fn initial_default() -> u64 {
    500
}
fn max_backoff_default() -> u64 {
    60_000
}
fn max_age_default() -> u64 {
    86_400
}

/// `[[sources]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDoc {
    /// Unique id (bounded label value in metrics).
    pub id: String,
    /// Display name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The control plane's workspace of the source (set by the control plane; a file
    /// catalog leaves it out): workspace-wide suppressions apply by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Default true.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Optional request rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDoc>,
    /// Keys; several at once let a key be rotated with overlap.
    #[serde(default)]
    pub write_keys: Vec<KeyDoc>,
    /// Id of the tracking plan validating this source's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_plan: Option<String>,
    /// `off` (default), `warn` or `block`.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// Finer controls on top of `enforcement`.
    #[serde(default)]
    pub protocols: ControlsDoc,
    /// What destinations with consent categories get of this source's events that carry
    /// no consent preferences: `deliver` (default) or `withhold`.
    #[serde(default, skip_serializing_if = "WithoutConsent::is_default")]
    pub without_consent: WithoutConsent,
    /// Paths to drop, hash or mask before an event is stored ([`crate::pii`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pii: Vec<crate::pii::RuleDoc>,
    /// The salt `hash` rules use (the control plane sets its workspace's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_salt: Option<crate::pii::Salt>,
}

fn enabled_default() -> bool {
    true
}

/// `rate_limit = { requests_per_second = 500, burst = 1000 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDoc {
    /// Sustained requests per second, at least 1.
    pub requests_per_second: u32,
    /// Burst above the sustained rate; defaults to `requests_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// One write key: the plaintext `key` or its `sha256` digest (hex).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDoc {
    /// Plaintext key (never written to the last-known-good copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Lower-case hex SHA-256 of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A revoked key is refused with 401.
    #[serde(default)]
    pub revoked: bool,
    /// After this instant the key is refused (end of a rotation overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for KeyDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDoc")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("sha256", &self.sha256)
            .field("revoked", &self.revoked)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl KeyDoc {
    /// The key's digest, from whichever form is given.
    pub fn digest(&self) -> Option<KeyDigest> {
        match (&self.key, &self.sha256) {
            (Some(key), None) => Some(KeyDigest::of(key)),
            (None, Some(hex)) => KeyDigest::from_hex(hex),
            _ => None,
        }
    }
}

/// Why a catalog document is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// Not TOML, or not of the catalog's shape.
    #[error("{0}")]
    Syntax(String),
    /// Two sources share an id.
    #[error("source id {0:?} appears twice")]
    DuplicateSource(String),
    /// A source id is empty.
    #[error("a source has an empty id")]
    EmptySourceId,
    /// A key entry has neither or both of `key` and `sha256`, an empty key, or bad hex.
    #[error(
        "source {0:?}: each write key needs exactly one of `key` (non-empty) or `sha256` (64 hex chars)"
    )]
    BadKey(String),
    /// The same key is listed twice.
    #[error("source {0:?}: a write key is listed twice in the catalog")]
    DuplicateKey(String),
    /// The file is empty: almost always a write caught half-way.
    #[error("the catalog is empty (write `sources = []` for a catalog without sources)")]
    Empty,
    /// A rate limit of zero.
    #[error("source {0:?}: rate_limit values must be at least 1")]
    BadRateLimit(String),
    /// Two destinations share an id, or an id is empty.
    #[error("destination id {0:?} is empty or appears twice")]
    BadDestinationId(String),
    /// A destination names a source that does not exist.
    #[error("destination {0:?} names unknown source {1:?}")]
    UnknownSource(String, String),
    /// A destination setting is out of range.
    #[error("destination {0:?}: {1}")]
    BadDestination(String, &'static str),
    /// A tracking plan or its use is invalid.
    #[error("tracking plan {0:?}: {1}")]
    BadPlan(String, String),
    /// A quota's id is empty or appears twice, or it names an unknown source.
    #[error("quota {0:?}: {1}")]
    BadQuota(String, String),
    /// A source function's id is empty or appears twice, its source is unknown, or its
    /// secret's digest is not one.
    #[error("source function {0:?}: {1}")]
    BadSourceFunction(String, String),
    /// A source's PII rules or salt are invalid.
    #[error("source {0:?}: {1}")]
    BadPii(String, &'static str),
}

/// Every reason a catalog document cannot be installed (all of them, not the first).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Problems(pub Vec<Invalid>);

impl From<Invalid> for Problems {
    fn from(one: Invalid) -> Self {
        Self(vec![one])
    }
}

impl Document {
    /// Parses a TOML catalog (its shape only: whether it can be installed is
    /// [`super::Snapshot::try_build`]'s to say).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.trim().is_empty() {
            return Err(Invalid::Empty);
        }
        toml::from_str(text).map_err(|e| Invalid::Syntax(describe(&e, text)))
    }

    /// Parses a last-known-good JSON copy (digests only).
    pub fn parse_json(bytes: &[u8]) -> Result<Self, Invalid> {
        serde_json::from_slice(bytes).map_err(|e| Invalid::Syntax(e.to_string()))
    }

    /// [`Self::hashed`], and every destination's credentials replaced
    /// ([`KindDoc::redacted`]): the catalog a gateway node gets.
    pub fn without_credentials(&self) -> Self {
        let mut doc = self.hashed();
        for d in &mut doc.destinations {
            d.kind = d.kind.redacted();
            // Gateways do not deliver: a function's code and settings stay with delivery.
            d.function = None;
        }
        doc
    }

    /// The same catalog with every plaintext key replaced by its digest.
    pub fn hashed(&self) -> Self {
        let mut doc = self.clone();
        for key in doc.sources.iter_mut().flat_map(|s| s.write_keys.iter_mut()) {
            if let Some(plain) = key.key.take() {
                key.sha256 = Some(KeyDigest::of(&plain).to_hex());
            }
        }
        doc
    }

    /// This document without sources' PII rules and salts (for nodes that only deliver).
    pub fn without_pii(mut self) -> Self {
        for source in &mut self.sources {
            source.pii.clear();
            source.pii_salt = None;
        }
        self
    }

    /// Every reason this document cannot be installed, and its plans compiled (once).
    pub(super) fn check(&self) -> Result<HashMap<&str, Arc<Plan>>, Problems> {
        let mut problems = Vec::new();
        let mut plans = HashMap::new();
        self.check_into(&mut problems, &mut plans);
        if problems.is_empty() {
            Ok(plans)
        } else {
            Err(Problems(problems))
        }
    }

    fn check_into<'d>(
        &'d self,
        problems: &mut Vec<Invalid>,
        plans: &mut HashMap<&'d str, Arc<Plan>>,
    ) {
        let mut ids = HashSet::new();
        let mut digests = HashSet::new();
        for s in &self.sources {
            if s.id.is_empty() {
                problems.push(Invalid::EmptySourceId);
            } else if !ids.insert(s.id.as_str()) {
                problems.push(Invalid::DuplicateSource(s.id.clone()));
            }
            if let Some(r) = s.rate_limit
                && (r.requests_per_second == 0 || r.burst == Some(0))
            {
                problems.push(Invalid::BadRateLimit(s.id.clone()));
            }
            let salt = s.pii_salt.as_ref().map(|salt| salt.0.as_str());
            let problem = crate::pii::rules_problem(&s.pii)
                .or_else(|| crate::pii::salt_problem(&s.pii, salt));
            if let Some(why) = problem {
                problems.push(Invalid::BadPii(s.id.clone(), why));
            }
            for k in &s.write_keys {
                match k.digest().filter(|_| k.key.as_deref() != Some("")) {
                    None => problems.push(Invalid::BadKey(s.id.clone())),
                    Some(digest) if !digests.insert(digest) => {
                        problems.push(Invalid::DuplicateKey(s.id.clone()));
                    }
                    Some(_) => {}
                }
            }
        }
        let mut endpoints = HashSet::new();
        for f in &self.source_functions {
            let bad = |why: &str| Invalid::BadSourceFunction(f.id.clone(), why.to_owned());
            if f.id.is_empty() || !endpoints.insert(f.id.as_str()) {
                problems.push(bad("the id is empty or appears twice"));
            }
            if !ids.contains(f.source.as_str()) {
                problems.push(bad(&format!("unknown source {:?}", f.source)));
            }
            if KeyDigest::from_hex(&f.secret_sha256).is_none() {
                problems.push(bad("secret_sha256 is not 64 hex digits"));
            }
        }
        let mut pools = HashSet::new();
        for q in &self.quotas {
            if q.id.is_empty() || !pools.insert(q.id.as_str()) {
                problems.push(Invalid::BadQuota(
                    q.id.clone(),
                    "id is empty or appears twice".to_owned(),
                ));
            }
            for source in q.sources.iter().filter(|s| !ids.contains(s.as_str())) {
                problems.push(Invalid::BadQuota(
                    q.id.clone(),
                    format!("names unknown source {source:?}"),
                ));
            }
        }
        let mut plan_ids = HashSet::new();
        for p in &self.tracking_plans {
            if p.id.is_empty() || !plan_ids.insert(p.id.as_str()) {
                problems.push(Invalid::BadPlan(
                    p.id.clone(),
                    "id is empty or appears twice".to_owned(),
                ));
                continue;
            }
            match Plan::compile(p) {
                Ok(plan) => {
                    plans.insert(p.id.as_str(), Arc::new(plan));
                }
                Err(e) => problems.push(Invalid::BadPlan(p.id.clone(), e.to_string())),
            }
        }
        for s in &self.sources {
            if let Some(plan) = &s.tracking_plan
                && !plan_ids.contains(plan.as_str())
            {
                problems.push(Invalid::BadPlan(
                    plan.clone(),
                    format!("source {:?} names a plan that does not exist", s.id),
                ));
            }
            if let Err(why) = crate::protocols::Controls::resolve(s.enforcement, &s.protocols) {
                problems.push(Invalid::BadPlan(
                    s.tracking_plan.clone().unwrap_or_default(),
                    format!("source {:?}: {why}", s.id),
                ));
            }
            for target in [
                &s.protocols.forward_blocked_to,
                &s.protocols.forward_violations_to,
            ]
            .into_iter()
            .flatten()
            {
                if !ids.contains(target.as_str()) || target == &s.id {
                    problems.push(Invalid::BadPlan(
                        s.tracking_plan.clone().unwrap_or_default(),
                        format!(
                            "source {:?} forwards to {target:?}, which is not another source",
                            s.id
                        ),
                    ));
                }
            }
        }
        let mut destination_ids = HashSet::new();
        // File names in use, with their rotations (`name.1`, `name.2`…): no two file
        // destinations write, or rotate over, the same file.
        let file_names: Vec<(&str, &str)> = self
            .destinations
            .iter()
            .filter_map(|d| match &d.kind {
                KindDoc::File(f) => f.path.to_str().map(|p| (d.id.as_str(), p)),
                _ => None,
            })
            .collect();
        let clashes = |id: &str, name: &str| {
            file_names.iter().any(|(other, theirs)| {
                *other != id
                    && (name == *theirs
                        || [(name, *theirs), (*theirs, name)].iter().any(|(a, b)| {
                            a.strip_prefix(*b)
                                .and_then(|rest| rest.strip_prefix('.'))
                                .is_some_and(|n| {
                                    !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())
                                })
                        }))
            })
        };
        for d in &self.destinations {
            if d.id.is_empty() || !destination_ids.insert(d.id.as_str()) {
                problems.push(Invalid::BadDestinationId(d.id.clone()));
            }
            for unknown in d.sources.iter().filter(|s| !ids.contains(s.as_str())) {
                problems.push(Invalid::UnknownSource(d.id.clone(), unknown.clone()));
            }
            let mut bad = |why| problems.push(Invalid::BadDestination(d.id.clone(), why));
            if d.max_in_flight == 0 {
                bad("max_in_flight must be at least 1");
            }
            if d.function.as_ref().is_some_and(|f| f.id.is_empty()) {
                bad("function.id must not be empty");
            }
            if let Some(why) = consent_categories_problem(&d.consent_categories) {
                bad(why);
            }
            if d.rate_limit
                .is_some_and(|r| r.requests_per_second == 0 || r.burst == Some(0))
            {
                bad("rate_limit values must be at least 1");
            }
            if d.retry.initial_backoff_ms == 0
                || d.retry.max_backoff_ms < d.retry.initial_backoff_ms
            {
                bad("retry needs 0 < initial_backoff_ms <= max_backoff_ms");
            }
            match &d.kind {
                KindDoc::Webhook(w) => {
                    if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                        bad("settings.url must be an http:// or https:// URL");
                    }
                    if w.batch_size == 0 || w.batch_bytes == 0 || w.timeout_ms == 0 {
                        bad("settings.batch_size, batch_bytes and timeout_ms must be at least 1");
                    }
                }
                KindDoc::File(f) => {
                    if let Some(problem) = file_name_problem(&f.path) {
                        bad(problem);
                    }
                    if f.path.to_str().is_some_and(|p| clashes(&d.id, p)) {
                        bad(
                            "settings.path is another file destination's file (or one of its rotations)",
                        );
                    }
                    if f.rotate_bytes == 0 {
                        bad("settings.rotate_bytes must be at least 1");
                    }
                }
                KindDoc::Nats(n) => {
                    if n.subject.is_empty() || n.timeout_ms == 0 {
                        bad("settings.subject must be set and timeout_ms at least 1");
                    }
                }
            }
        }
    }
}

/// The parser's message and the line it points at, without the snippet of the file
/// that `toml` would quote: that line may hold a plaintext write key, and this text
/// goes to the log.
fn describe(error: &toml::de::Error, text: &str) -> String {
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{} (line {line})", error.message().trim_end())
        }
        None => error.message().trim_end().to_owned(),
    }
}

/// What is wrong with a destination's consent categories, if anything: at most
/// [`MAX_CATEGORIES`], each 1 to [`MAX_CATEGORY_CHARS`] characters, no repeats.
pub fn consent_categories_problem(categories: &[String]) -> Option<&'static str> {
    let mut seen = HashSet::new();
    if categories.len() > MAX_CATEGORIES {
        Some("consent_categories holds at most 32 categories")
    } else if categories.iter().any(|c| {
        c.is_empty() || c.chars().count() > MAX_CATEGORY_CHARS || c.chars().any(char::is_control)
    }) {
        Some("each consent category is 1 to 100 printable characters")
    } else if !categories.iter().all(|c| seen.insert(c)) {
        Some("consent_categories names a category twice")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_and_urls_never_show_secrets() {
        assert_eq!(
            redacted_url("https://hooks.example/services/T0/B0/XXXX?token=abc"),
            "https://hooks.example/…"
        );
        assert_eq!(
            redacted_url("nats://user:pass@nats.example:4222"),
            "nats://nats.example:4222"
        );
        assert_eq!(redacted_url("http://h:8080"), "http://h:8080");
        let hook = WebhookDoc {
            url: "https://u:pw@hooks.example/t/SECRET1?k=SECRET2".into(),
            headers: [("Authorization".to_owned(), "Bearer SECRET3".to_owned())].into(),
            secret: Some("SECRET4".into()),
            batch_size: 1,
            batch_bytes: 1,
            batch_ms: 1,
            timeout_ms: 1,
        };
        let nats = NatsDoc {
            url: "nats://user:SECRET5@h:4222".into(),
            subject: "s".into(),
            jetstream: true,
            timeout_ms: 1,
        };
        let text = format!("{hook:?} {nats:?}");
        assert!(!text.contains("SECRET") && !text.contains("pw@"), "{text}");
        assert!(text.contains("Authorization"), "header names stay: {text}");
    }

    /// Parsed, then checked (the way every catalog is installed).
    fn installable(text: &str) -> Result<Document, Problems> {
        let doc = Document::parse(text)?;
        doc.check()?;
        Ok(doc)
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let text = "[[sources]]\nid = \"a\"\n[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"\" }]\n\
                    [[destinations]]\nid = \"d\"\ntype = \"file\"\nsources = [\"nope\"]\nmax_in_flight = 0\nsettings = { path = \"x\" }\n";
        let problems = installable(text).expect_err("invalid").0;
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn rejects_ambiguous_or_duplicate_entries() {
        for bad in [
            "[[sources]]\nid = \"a\"\n[[sources]]\nid = \"a\"\n",
            "[[sources]]\nid = \"\"\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"\" }]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ sha256 = \"zz\" }]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{}]\n",
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"k\" }, { key = \"k\" }]\n",
            "[[sources]]\nid = \"a\"\nrate_limit = { requests_per_second = 0 }\n",
            "[[sources]]\nid = \"a\"\nunknown = 1\n",
            "[[sources]]\nid = \"a\"\nwithout_consent = \"sometimes\"\n",
            "[[destinations]]\nid = \"d\"\ntype = \"file\"\nconsent_categories = [\"\"]\nsettings = { path = \"x\" }\n",
            "[[destinations]]\nid = \"d\"\ntype = \"file\"\nconsent_categories = [\"A\", \"A\"]\nsettings = { path = \"x\" }\n",
            "not toml at all [",
            "  \n",
        ] {
            assert!(installable(bad).is_err(), "accepted: {bad}");
        }
        let many: Vec<String> = (0..=MAX_CATEGORIES).map(|i| format!("c{i}")).collect();
        assert!(consent_categories_problem(&many).is_some());
        assert!(consent_categories_problem(&many[1..]).is_none());
        assert!(consent_categories_problem(&["x".repeat(MAX_CATEGORY_CHARS + 1)]).is_some());
        assert!(consent_categories_problem(&["é".repeat(MAX_CATEGORY_CHARS)]).is_none());
        assert!(consent_categories_problem(&["Ads\n".to_owned()]).is_some());
    }

    const WITH_DESTINATIONS: &str = r#"
        [[sources]]
        id = "web"
        [[destinations]]
        id = "hook"
        type = "webhook"
        sources = ["web"]
        filter = { event_types = ["track"] }
        [destinations.settings]
        url = "https://example.com/in"
        batch_size = 10
        [[destinations]]
        id = "disk"
        type = "file"
        settings = { path = "/tmp/x.ndjson" }
    "#;

    #[test]
    fn destinations_parse_with_their_settings() {
        let d = Document::parse(WITH_DESTINATIONS).expect("valid");
        assert_eq!(d.destinations.len(), 2);
        match &d.destinations[0].kind {
            KindDoc::Webhook(w) => assert_eq!((w.batch_size, w.timeout_ms), (10, 10_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.destinations[0].filter.event_types, ["track"]);
        assert!(matches!(d.destinations[1].kind, KindDoc::File(_)));
        let json = serde_json::to_vec(&d.hashed()).expect("json");
        assert_eq!(Document::parse_json(&json).expect("round trip"), d.hashed());
    }

    #[test]
    fn bad_destinations_are_refused() {
        for (from, to) in [
            ("sources = [\"web\"]", "sources = [\"nope\"]"),
            ("type = \"webhook\"", "type = \"carrier-pigeon\""),
            (
                "url = \"https://example.com/in\"",
                "url = \"ftp://example.com\"",
            ),
            ("batch_size = 10", "batch_size = 0"),
            ("id = \"disk\"", "id = \"hook\""),
            ("batch_size = 10", "batch_size = 10\n        bogus = 1"),
            (
                "sources = [\"web\"]",
                "sources = [\"web\"]\n        bogus = 1",
            ),
        ] {
            let text = WITH_DESTINATIONS.replacen(from, to, 1);
            assert!(installable(&text).is_err(), "accepted: {to}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line_but_never_quote_it() {
        let text =
            "[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"very-secret-key\", bogus = 1 }]\n";
        let message = Document::parse(text).expect_err("invalid").to_string();
        assert!(!message.contains("very-secret-key"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn hashed_copy_holds_no_plaintext_and_round_trips() {
        let d =
            Document::parse("[[sources]]\nid = \"a\"\nwrite_keys = [{ key = \"plain-secret\" }]\n")
                .expect("valid");
        let json = serde_json::to_vec(&d.hashed()).expect("serializes");
        assert!(!String::from_utf8_lossy(&json).contains("plain-secret"));
        let back = Document::parse_json(&json).expect("parses");
        assert_eq!(
            back.sources[0].write_keys[0].digest(),
            Some(KeyDigest::of("plain-secret"))
        );
    }
}
