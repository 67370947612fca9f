//! Loading and validating the TOML configuration.
//!
//! The shipped `config/sluice.toml` documents every key with its default; the same
//! defaults live in the `Default` impls below, and a test keeps the two equal. Values
//! come from, in order of precedence: environment variables `SLUICE__SECTION__KEY`
//! (double underscores separate the path, e.g. `SLUICE__SERVER__LISTEN=0.0.0.0:80`),
//! the config file, the defaults. Relative paths are resolved against the process's
//! working directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// A secret from the configuration (a bearer token): redacted in `Debug`, compared in
/// constant time.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::{Digest as _, Sha256};
        use subtle::ConstantTimeEq as _;
        // Digests first: equal lengths, so not even the length leaks.
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.as_slice().ct_eq(b.as_slice()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SLUICE__";

use crate::record::{MAX_RECORD, RECORD_HEADROOM};

/// The whole configuration of one Sluice process.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners, connection limits and timeouts.
    pub server: Server,
    /// Bounds on what a request may carry.
    pub limits: Limits,
    /// Where write keys and sources come from.
    pub catalog: Catalog,
    /// The durable event log.
    pub log: Log,
    /// messageId de-duplication.
    pub dedup: Dedup,
    /// Forwarding to destinations.
    pub delivery: Delivery,
    /// Logging output.
    pub telemetry: Telemetry,
    /// The control plane (`catalog.source = "control"`).
    pub control: Control,
    /// Where function code runs.
    pub functions: Functions,
}

/// `[functions]`: the program function code runs in. Every function runs in a process of
/// its own, started from this program as `PROGRAM function-host`: for a control plane's
/// test run, a destination's insert function (delivery) and a source function's
/// endpoint (the data listener).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Functions {
    /// The program. Empty (default): this `sluice` executable.
    pub program: PathBuf,
}

impl Functions {
    /// The program as configured, or this executable.
    pub fn program(&self) -> PathBuf {
        if self.program.as_os_str().is_empty() {
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("sluice"))
        } else {
            self.program.clone()
        }
    }
}

/// `[server]`: listeners, connection limits and timeouts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Tracking API listener. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Admin listener (`/metrics`, `/health`, `/ready`). Default `127.0.0.1:9090`.
    pub admin_listen: SocketAddr,
    /// Open connections at most; further ones wait in the kernel backlog. Default 10000.
    pub max_connections: usize,
    /// Requests being processed at once at most; beyond it: 503 `overloaded`. Default 4096.
    pub max_in_flight: usize,
    /// Time allowed to send a request's headers, in ms. Default 10000.
    pub header_timeout_ms: u64,
    /// Time allowed to send a request's body, in ms. Default 30000.
    pub body_timeout_ms: u64,
    /// A connection with no request for this long is closed, in ms. Default 60000.
    pub idle_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, in ms. Default 30000.
    pub shutdown_grace_ms: u64,
    /// Peers whose `X-Forwarded-For` is trusted for `context.ip` (addresses or CIDRs). Default none.
    pub trusted_proxies: Vec<IpNet>,
    /// Serve HTTPS when both `tls_cert` and `tls_key` (PEM files) are set. Default: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
    /// Largest request head (request line and headers) in bytes; past it: 431. At
    /// least 8192. Default 32768.
    pub max_header_bytes: usize,
    /// A request body must arrive at least this fast (bytes per second, averaged after a
    /// 2-second grace); slower: 408. 0 turns the check off. Default 1024.
    pub min_body_bytes_per_sec: u64,
    /// HTTP/2 streams one connection may have open at once. Default 100.
    pub max_streams_per_connection: u32,
    /// Open connections one client address may hold (trusted proxies are exempt);
    /// further ones are closed at once. Default 1024.
    pub max_connections_per_ip: usize,
    /// Requests without a write key in their headers (key in the body, or none) being
    /// processed at once, from their own budget so they never crowd out requests with a
    /// header key; beyond it: 503 `overloaded`. Default 512.
    pub max_in_flight_keyless: usize,
    /// Requests with a missing or invalid write key one client address may send per
    /// minute; past it: 429 `too_many_failed_keys` (no key lookup). 0: no limit.
    /// Default 120.
    pub max_key_failures_per_minute: u32,
    /// Open connections on the admin listener at most. Default 128.
    pub admin_max_connections: usize,
    /// Bearer token the admin listener's changing routes (`POST /dlq/{id}/replay`)
    /// require; unset: those routes are refused. `/metrics`, `/health`, `/ready` and
    /// `GET /dlq` stay open. Default unset.
    pub admin_token: Option<Secret>,
    /// The public base URL of the Tracking API (`https://events.example.com`), used as
    /// `apiHost` in `GET /v1/projects/{key}/settings`; unset: the request's `Host` if it
    /// is a plain host name or address. Default unset.
    pub public_url: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            max_connections: 10_000,
            max_in_flight: 4096,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            shutdown_grace_ms: 30_000,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_header_bytes: 32_768,
            min_body_bytes_per_sec: 1024,
            max_streams_per_connection: 100,
            max_connections_per_ip: 1024,
            max_in_flight_keyless: 512,
            max_key_failures_per_minute: 120,
            admin_max_connections: 128,
            admin_token: None,
            public_url: None,
        }
    }
}

impl Server {
    /// Whether `peer` may set `X-Forwarded-For`.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// `[limits]`: bounds on what a request may carry (Segment's published limits by default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body after decompression, in bytes. Default 512000 (500 KB).
    pub max_request_bytes: usize,
    /// Largest single message, in bytes of JSON. Default 32768 (32 KB).
    pub max_message_bytes: usize,
    /// Most items in one batch. Default 2500.
    pub max_batch_items: usize,
    /// Longest `messageId`, in characters. Default 100.
    pub max_message_id_chars: usize,
    /// Deepest JSON nesting (objects and arrays) accepted; at most 128. Default 64.
    pub max_json_depth: usize,
    /// Bytes one request may make the event log store, its events expanded (a batch's
    /// `context` is copied into every event); past it: 413 `request_too_large`.
    /// Default 2048000 (4 × `max_request_bytes`).
    pub max_stored_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 512_000,
            max_message_bytes: 32_768,
            max_batch_items: 2500,
            max_message_id_chars: 100,
            max_json_depth: 64,
            max_stored_request_bytes: 2_048_000,
        }
    }
}

/// `[catalog]`: where write keys and sources come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Catalog {
    /// Where the gateway's catalog comes from. Default `control`: the control plane's
    /// store (the file is imported into it on first start). `file`: the file only,
    /// watched for changes, and no control plane (GitOps). `remote`: another process's
    /// control plane at `control_url` (a gateway with no store of its own).
    pub source: CatalogSourceKind,
    /// With `source = "remote"`: the control plane's base URL, e.g. `http://cp:8081`.
    pub control_url: String,
    /// With `source = "remote"`: a node credential (`slc_node_…`, `POST /api/v1/nodes`).
    pub node_token: Secret,
    /// With `source = "remote"`: this gateway's name in `/api/v1/gateways`.
    /// Default: the host name.
    pub node_name: String,
    /// The catalog file, watched for changes. Default `config/catalog.toml`.
    pub path: PathBuf,
    /// How often the catalog file is checked even without a change notification, and how
    /// often the control-plane store re-reads its revision for changes made by other
    /// processes (the backstop for PostgreSQL's LISTEN/NOTIFY, whose notifications are
    /// lost across reconnects), in ms. Default 1000.
    pub poll_interval_ms: u64,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            source: CatalogSourceKind::Control,
            control_url: String::new(),
            node_token: Secret::default(),
            node_name: String::new(),
            path: PathBuf::from("config/catalog.toml"),
            poll_interval_ms: 1000,
        }
    }
}

/// `catalog.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSourceKind {
    /// The control plane's store.
    Control,
    /// `catalog.path` only.
    File,
    /// A control plane in another process (`catalog.control_url`).
    Remote,
}

/// `[control]`: the control plane (API, store, feed to the gateway).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Control listener: REST API `/api/v1` and setup links. Default `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// `postgres://…` for PostgreSQL; empty (default): SQLite `control.db` in `log.dir`.
    pub database_url: Secret,
    /// The URL people reach the control listener at, for setup and invite links.
    /// Default: `http://` + `listen`.
    pub public_url: String,
    /// API requests per token per minute; beyond it 429 with `Retry-After`. Default 600.
    pub rate_limit_per_minute: u32,
    /// Append every audit event, as it commits, to this NDJSON file (outside the
    /// database); `sluice admin audit verify --stream FILE` checks the database against
    /// it. Empty (default): off.
    pub audit_stream: std::path::PathBuf,
    /// POST every audit event, as it commits, to this URL (NDJSON batches, at least
    /// once, signed with `audit_webhook_secret` in `X-Signature`). Empty (default): off.
    pub audit_webhook: String,
    /// The HMAC key of `audit_webhook`'s signatures (required with it).
    pub audit_webhook_secret: Secret,
    /// Run function code on this control plane (`POST /api/v1/functions/test-run`),
    /// each run in a child process killed if it overruns. Default `true`.
    pub functions: bool,
    /// The clock the API decides with: the system's (tests move theirs by hand). Not a
    /// setting: never read from a file or the environment.
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: Secret::default(),
            public_url: String::new(),
            rate_limit_per_minute: 600,
            audit_stream: std::path::PathBuf::new(),
            audit_webhook: String::new(),
            audit_webhook_secret: Secret::default(),
            functions: true,
            clock: crate::clock::Clock::default(),
        }
    }
}

impl Control {
    /// The URL links are built on.
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

/// How an append is made durable before the request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Written and `fdatasync`ed; appends that arrive together share one sync (group
    /// commit). Survives a power cut.
    Fsync,
    /// Written to the operating system. Survives a crash of Sluice, not of the machine.
    Os,
}

/// `[log]`: the durable event log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// Directory of the event log's segment files (and the catalog's last-known-good copy). Default `data`.
    pub dir: PathBuf,
    /// `fsync` or `os`. Default `fsync`.
    pub durability: Durability,
    /// A segment is closed and a new one started past this size, in bytes. Default 67108864 (64 MiB).
    pub segment_bytes: u64,
    /// Bound on the log's total size, in bytes; over it requests get 503. Default 4294967296 (4 GiB).
    pub max_bytes: u64,
    /// Closed segments older than this are deleted, unless a reader still needs them, in hours. Default 168.
    pub retention_hours: u64,
    /// Appends waiting for the writer at most; beyond it requests wait. Default 1024.
    pub queue_depth: usize,
    /// Where accepted events are made durable: `local` (the segment files above) or
    /// `jetstream` (a NATS JetStream stream, `[log.jetstream]`). Default `local`.
    pub backend: LogBackend,
    /// The JetStream stream, with `backend = "jetstream"`.
    pub jetstream: JetStream,
}

/// `log.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// Segment files in `log.dir` on this machine.
    Local,
    /// A NATS JetStream stream: 200 only after JetStream acknowledged every event.
    Jetstream,
}

/// `[log.jetstream]`: the stream events are published to (created or updated at start).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JetStream {
    /// NATS server URLs, comma-separated (any node of the cluster). Default `nats://127.0.0.1:4222`.
    pub url: String,
    /// Stream name. Default `SLUICE_EVENTS`.
    pub stream: String,
    /// Events go to `<subject_prefix>.<source id>`; the stream takes `<subject_prefix>.>`. Default `sluice.events`.
    pub subject_prefix: String,
    /// Copies of each event in the cluster: 3 in production (a 3-node cluster), 1 on one server. Default 1.
    pub replicas: usize,
    /// `file` or `memory` storage. Default `file`.
    pub storage: JetStreamStorage,
    /// Bound on the stream's size, in bytes; past it publishes are refused and requests get 503 (never a silent drop of old events). Default 4294967296 (4 GiB).
    pub max_bytes: i64,
    /// Events older than this are removed, delivered or not, in hours. Default 168.
    pub max_age_hours: u64,
    /// JetStream drops a second event with the same source and messageId within this window, in seconds. Default 120.
    pub duplicate_window_secs: u64,
    /// Publishes awaiting JetStream's ack at most (over all requests); beyond, requests wait. Default 4096.
    pub max_pending_acks: usize,
    /// Longest a request waits for JetStream (publishing and all its acks) before answering 503, in milliseconds. Default 5000.
    pub ack_timeout_ms: u64,
    /// How long to try reaching JetStream at start before giving up, in milliseconds. Default 10000.
    pub connect_timeout_ms: u64,
    /// An event a delivery process fetched and neither acknowledged nor gave back within
    /// this is handed to another process (the first is presumed dead), in milliseconds.
    /// Set when a destination's consumer is created. Default 60000.
    pub redeliver_after_ms: u64,
    /// How long a destination must stay out of the catalog before a gateway deletes its
    /// consumer (and the events waiting in it), in seconds: a removal that is undone, or
    /// a gateway that reads the catalog late, never deletes a consumer still wanted.
    /// Default 300.
    pub remove_consumer_after_secs: u64,
    /// NATS user (with `password`). Default: none.
    pub user: String,
    /// NATS password for `user`. Default: none.
    pub password: Secret,
    /// NATS authorization token (instead of `user`/`password`). Default: none.
    pub token: Secret,
    /// PEM file of the CAs that sign the NATS servers' certificates; set, the connection
    /// must use TLS. Default: none (the system's roots when a server asks for TLS).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for servers that verify clients (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

/// `log.jetstream.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JetStreamStorage {
    /// On disk on each replica.
    File,
    /// In memory (lost when a node restarts; tests and caches only).
    Memory,
}

impl Default for JetStream {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream: "SLUICE_EVENTS".into(),
            subject_prefix: "sluice.events".into(),
            replicas: 1,
            storage: JetStreamStorage::File,
            max_bytes: 4 << 30,
            max_age_hours: 168,
            duplicate_window_secs: 120,
            max_pending_acks: 4096,
            ack_timeout_ms: 5_000,
            connect_timeout_ms: 10_000,
            redeliver_after_ms: 60_000,
            remove_consumer_after_secs: 300,
            user: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            durability: Durability::Fsync,
            segment_bytes: 64 << 20,
            max_bytes: 4 << 30,
            retention_hours: 168,
            queue_depth: 1024,
            backend: LogBackend::Local,
            jetstream: JetStream::default(),
        }
    }
}

/// `[dedup]`: messageId de-duplication (per source).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dedup {
    /// How long a messageId is remembered, in seconds; 0 turns de-duplication off. Default 86400.
    pub window_secs: u64,
    /// Most messageIds remembered (~20 bytes each); beyond it the oldest part of the
    /// window is forgotten early. Default 1000000.
    pub max_entries: u64,
}

impl Default for Dedup {
    fn default() -> Self {
        Self {
            window_secs: 86_400,
            max_entries: 1_000_000,
        }
    }
}

/// `[delivery]`: forwarding stored events to destinations.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    /// Run destination workers in this process. Default true.
    pub enabled: bool,
    /// Let destinations, and functions' `fetch`, reach loopback and private addresses
    /// (SSRF guard off). Default false.
    pub allow_private_destinations: bool,
    /// The only directory `file` destinations write to: each writes the file its
    /// `settings.path` names (a bare file name) inside it, never a link. It must hold
    /// nothing else of Sluice's (not `log.dir`, not inside it, not around it).
    /// Default `./exports`.
    pub file_dir: PathBuf,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_private_destinations: false,
            file_dir: PathBuf::from("./exports"),
        }
    }
}

/// Whether one of two directories (as written, `.` parts ignored) lies in the other or
/// they are the same.
fn nested(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::path::Component;
    let parts = |p: &std::path::Path| -> Vec<std::ffi::OsString> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_owned())
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`: logging output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Telemetry {
    /// `tracing` filter, overridden by `RUST_LOG`. Default `info`.
    pub log_filter: String,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML (after env overrides) does not describe a valid configuration.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// An env override names a key path that cannot be set.
    #[error("environment variable {0} does not name a config key (use SLUICE__SECTION__KEY)")]
    BadOverride(String),
    /// A value is out of its allowed range.
    #[error("invalid config: {0}")]
    Invalid(&'static str),
}

impl Config {
    /// Loads `path` (or only defaults when `None`), applies env overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml(&text, std::env::vars())
    }

    /// Parses `text`, applies the `SLUICE__…` overrides found in `env`, validates.
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut table: toml::Table = toml::from_str(text)?;
        for (name, value) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, &name, path, &value)?;
            }
        }
        let config: Config = toml::Value::Table(table).try_into()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        if self.catalog.source == CatalogSourceKind::Remote
            && (self.catalog.control_url.is_empty() || self.catalog.node_token.expose().is_empty())
        {
            return Err(Error::Invalid(
                "catalog.source = \"remote\" needs catalog.control_url and catalog.node_token (serve --control-url … --node-token …)",
            ));
        }
        let files = &self.delivery.file_dir;
        if files.as_os_str().is_empty()
            || files
                .components()
                .any(|c| c == std::path::Component::ParentDir)
            || nested(files, &self.log.dir)
        {
            return Err(Error::Invalid(
                "delivery.file_dir must be a directory of its own: not empty, no '..', and neither log.dir nor inside or around it",
            ));
        }
        if !self.control.audit_webhook.is_empty()
            && (self.control.audit_webhook_secret.expose().is_empty()
                || !(self.control.audit_webhook.starts_with("https://")
                    || self.control.audit_webhook.starts_with("http://")))
        {
            return Err(Error::Invalid(
                "control.audit_webhook must be an http(s) URL and needs control.audit_webhook_secret",
            ));
        }
        if self.control.rate_limit_per_minute == 0 {
            return Err(Error::Invalid(
                "control.rate_limit_per_minute must be at least 1",
            ));
        }
        let url = self.control.database_url.expose();
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid(
                "control.database_url must be empty (SQLite in log.dir), sqlite:… or postgres://…",
            ));
        }
        let l = &self.limits;
        if l.max_json_depth == 0 || l.max_json_depth > 128 {
            return Err(Error::Invalid("limits.max_json_depth must be 1..=128"));
        }
        if l.max_message_bytes == 0 || l.max_message_bytes > l.max_request_bytes {
            return Err(Error::Invalid(
                "limits.max_message_bytes must be 1..=limits.max_request_bytes",
            ));
        }
        if l.max_stored_request_bytes < l.max_request_bytes {
            return Err(Error::Invalid(
                "limits.max_stored_request_bytes must be at least limits.max_request_bytes",
            ));
        }
        if l.max_batch_items == 0 {
            return Err(Error::Invalid("limits.max_batch_items must be at least 1"));
        }
        if self.server.max_connections == 0 || self.server.max_in_flight == 0 {
            return Err(Error::Invalid(
                "server.max_connections and server.max_in_flight must be at least 1",
            ));
        }
        let server = &self.server;
        if server.max_header_bytes < 8192
            || server.max_streams_per_connection == 0
            || server.max_connections_per_ip == 0
            || server.max_in_flight_keyless == 0
            || server.admin_max_connections == 0
        {
            return Err(Error::Invalid(
                "server.max_header_bytes must be at least 8192; server.max_streams_per_connection, max_connections_per_ip, max_in_flight_keyless and admin_max_connections at least 1",
            ));
        }
        if server.admin_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            return Err(Error::Invalid(
                "server.admin_token must be at least 16 characters",
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(Error::Invalid(
                "server.tls_cert and server.tls_key must be set together",
            ));
        }
        // A stored record is the message plus what Sluice adds (stamps, the source id,
        // a tracking-plan block annotation); the log cannot store a record past its
        // limit, and would take it for a torn tail at the next start.
        if l.max_message_bytes + RECORD_HEADROOM > MAX_RECORD as usize {
            return Err(Error::Invalid(
                "limits.max_message_bytes must be at most 16 MiB minus 64 KiB (the event log's record limit)",
            ));
        }
        let js = &self.log.jetstream;
        if self.log.backend == LogBackend::Jetstream
            && (js.url.trim().is_empty()
                || js.replicas == 0
                || js.replicas > 5
                || js.max_pending_acks == 0
                || js.redeliver_after_ms < 1_000
                || js.stream.is_empty()
                || js.stream.contains(['.', ' ', '*', '>'])
                || js.subject_prefix.is_empty()
                || js.subject_prefix.contains([' ', '*', '>']))
        {
            return Err(Error::Invalid(
                "log.jetstream needs a url, a stream name without '.', ' ', '*' or '>', a subject_prefix without wildcards, replicas 1..=5, max_pending_acks at least 1 and redeliver_after_ms at least 1000",
            ));
        }
        if self.log.backend == LogBackend::Jetstream
            && ((js.user.is_empty() != js.password.expose().is_empty())
                || (!js.user.is_empty() && !js.token.expose().is_empty())
                || js.tls_cert.is_some() != js.tls_key.is_some())
        {
            return Err(Error::Invalid(
                "log.jetstream: user and password go together, a token replaces them (not both), and tls_cert needs tls_key",
            ));
        }
        if self.log.segment_bytes < 4096 || self.log.queue_depth == 0 {
            return Err(Error::Invalid(
                "log.segment_bytes must be at least 4096 and log.queue_depth at least 1",
            ));
        }
        Ok(())
    }

    /// Timeout for sending a request body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.server.body_timeout_ms)
    }
}

/// Sets `table[a][b]… = value` for `SLUICE__A__B=value`; the value is read as TOML
/// (number, bool, array…) when it parses as one, else as a string.
fn apply_override(table: &mut toml::Table, name: &str, path: &str, raw: &str) -> Result<(), Error> {
    let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
    let Some((last, parents)) = keys.split_last() else {
        return Err(Error::BadOverride(name.to_owned()));
    };
    let mut node = table;
    for key in parents {
        let entry = node
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| Error::BadOverride(name.to_owned()))?;
    }
    if last.is_empty() {
        return Err(Error::BadOverride(name.to_owned()));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    node.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_matches_the_defaults() {
        let shipped = include_str!("../config/sluice.toml");
        let parsed = Config::from_toml(shipped, Vec::new()).expect("shipped config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn env_overrides_win_and_parse_types() {
        let env = vec![
            (
                "SLUICE__SERVER__LISTEN".to_owned(),
                "127.0.0.1:1".to_owned(),
            ),
            ("SLUICE__LOG__DURABILITY".to_owned(), "os".to_owned()),
            ("SLUICE__LIMITS__MAX_BATCH_ITEMS".to_owned(), "7".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let c = Config::from_toml("[log]\ndurability = \"fsync\"\n", env).expect("loads");
        assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 1)));
        assert_eq!(c.log.durability, Durability::Os);
        assert_eq!(c.limits.max_batch_items, 7);
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_rejected() {
        assert!(Config::from_toml("[server]\nlisten_typo = 1\n", Vec::new()).is_err());
        assert!(Config::from_toml("[limits]\nmax_json_depth = 500\n", Vec::new()).is_err());
        assert!(
            Config::from_toml("[server]\ntls_cert = \"a.pem\"\n", Vec::new()).is_err(),
            "cert without key"
        );
    }

    #[test]
    fn the_file_destinations_directory_holds_nothing_else_of_sluices() {
        let with = |dir: &str| {
            Config::from_toml(
                &format!("[log]\ndir = \"data\"\n[delivery]\nfile_dir = \"{dir}\"\n"),
                Vec::new(),
            )
        };
        for bad in ["data", "./data", "data/out", ".", "", "exports/../data"] {
            assert!(with(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "exports",
            "./exports",
            "/var/lib/sluice-exports",
            "data-out",
        ] {
            assert!(with(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn message_limits_the_log_cannot_store_are_refused() {
        let limits = |message: usize| {
            format!(
                "[limits]\nmax_request_bytes = {}\nmax_stored_request_bytes = {}\nmax_message_bytes = {message}\n",
                64 << 20,
                64 << 20
            )
        };
        let too_big = MAX_RECORD as usize;
        assert!(Config::from_toml(&limits(too_big), Vec::new()).is_err());
        let largest = too_big - RECORD_HEADROOM;
        assert!(Config::from_toml(&limits(largest), Vec::new()).is_ok());
    }

    #[test]
    fn trusted_proxies_match_cidrs() {
        let c = Config::from_toml(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n",
            Vec::new(),
        )
        .expect("loads");
        assert!(c.server.is_trusted_proxy("10.1.2.3".parse().expect("ip")));
        assert!(c.server.is_trusted_proxy("::1".parse().expect("ip")));
        assert!(
            !c.server
                .is_trusted_proxy("192.168.0.1".parse().expect("ip"))
        );
    }

    #[test]
    fn jetstream_credentials_and_tls_files_must_make_sense_together() {
        let js = |extra: &str| {
            Config::from_toml(
                &format!("[log]\nbackend = \"jetstream\"\n[log.jetstream]\n{extra}"),
                Vec::new(),
            )
        };
        assert!(js("user = \"u\"\npassword = \"p\"\n").is_ok());
        assert!(js("token = \"t\"\n").is_ok());
        assert!(js("tls_ca = \"/ca.pem\"\ntls_cert = \"/c.pem\"\ntls_key = \"/c.key\"\n").is_ok());
        for bad in [
            "user = \"u\"\n",
            "password = \"p\"\n",
            "user = \"u\"\npassword = \"p\"\ntoken = \"t\"\n",
            "tls_cert = \"/c.pem\"\n",
            "redeliver_after_ms = 10\n",
        ] {
            assert!(js(bad).is_err(), "{bad}");
        }
        let debug = format!(
            "{:?}",
            js("user = \"u\"\npassword = \"hunter2\"\n").expect("loads")
        );
        assert!(!debug.contains("hunter2"), "a password in Debug output");
    }
}
