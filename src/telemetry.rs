//! Metric names and registration, and tracing setup.
//!
//! Every metric family is declared here once, as a typed constant ([`HTTP_REQUESTS`] is a
//! [`Counters<2>`]: its two labels are part of its type) and in the table [`FAMILIES`]
//! (name, kind, labels, unit, help, buckets). Code elsewhere makes handles only through
//! those constants (`HTTP_REQUESTS.with([route, status])`); the `metrics` macros are
//! banned elsewhere by `clippy.toml`. Label values are bounded: routes are fixed names, sources come from
//! the catalog, reasons are `&'static str` codes. Never a user id, event name or raw path.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{LogFormat, Telemetry};

/// Label: the route's fixed name (`/v1/track`, `/v1/t`, `other`…).
pub const LABEL_ROUTE: &str = "route";
/// Label: the HTTP status code.
pub const LABEL_STATUS: &str = "status";
/// Label: the source id from the catalog.
pub const LABEL_SOURCE: &str = "source";
/// Label: a snake_case reason code.
pub const LABEL_REASON: &str = "reason";
/// Label: the destination id from the catalog.
pub const LABEL_DESTINATION: &str = "destination";
/// Label: a function's id.
pub const LABEL_FUNCTION: &str = "function";
/// Label: what became of an event (`event`, `passed`, `dropped`, or a failure's name).
pub const LABEL_OUTCOME: &str = "outcome";
/// Label: a violation type (`Required`, `Invalid Type`…).
pub const LABEL_TYPE: &str = "type";
/// Label: a planned event name, the call type, or `unplanned`.
pub const LABEL_EVENT: &str = "event";
/// Label: a destination's consent category (from the catalog).
pub const LABEL_CATEGORY: &str = "category";

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// What kind of series a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, in buckets.
    Histogram,
}

/// One metric family, declared once: name, kind, label names, unit, help text and
/// (histograms) buckets. Code reaches it only through its typed declaration
/// ([`Counters`], [`Gauges`], [`Histograms`]).
#[derive(Debug)]
pub struct Family {
    /// Exported name.
    pub name: &'static str,
    /// Series kind.
    pub kind: Kind,
    /// The label names every series of the family carries, in order.
    pub labels: &'static [&'static str],
    /// Unit, if any.
    pub unit: Option<Unit>,
    /// Help text.
    pub help: &'static str,
    /// Histogram buckets (empty for counters and gauges).
    pub buckets: &'static [f64],
}

impl Family {
    /// The registry key of one series: the family's label names with `values`.
    fn key(&self, values: &[&str]) -> Vec<metrics::Label> {
        self.labels
            .iter()
            .zip(values)
            .map(|(name, value)| metrics::Label::new(*name, (*value).to_owned()))
            .collect()
    }
}

/// Declares the typed handle of one kind of family: `N` is its number of labels, checked
/// when the family is declared, so a series can only be made with all its labels.
macro_rules! typed_family {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $handle:ty, $make:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<const N: usize>(&'static Family);

        impl<const N: usize> $name<N> {
            const fn declare(family: &'static Family) -> Self {
                assert!(family.labels.len() == N && matches!(family.kind, Kind::$kind));
                Self(family)
            }

            /// The family's declaration.
            pub const fn family(&self) -> &'static Family {
                self.0
            }

            /// The handle of the series with these label values (keep it where it is
            /// used often: making one hashes the key and searches the registry).
            #[allow(clippy::disallowed_macros)] // the one place the metrics macros are used
            pub fn with(&self, values: [&str; N]) -> $handle {
                metrics::$make!(self.0.name, self.0.key(&values))
            }
        }
    };
}

typed_family!(
    /// A declared counter family with `N` labels.
    Counters, Counter, metrics::Counter, counter
);
typed_family!(
    /// A declared gauge family with `N` labels.
    Gauges, Gauge, metrics::Gauge, gauge
);
typed_family!(
    /// A declared histogram family with `N` labels.
    Histograms, Histogram, metrics::Histogram, histogram
);

/// Declares every family as a typed constant and lists them all in [`FAMILIES`], so no
/// family can be used without being declared and described.
macro_rules! families {
    ($($id:ident: $ty:ident<$n:literal> = $name:literal, [$($label:expr),*], $unit:expr, $buckets:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: $ty<$n> = $ty::declare(&Family {
                name: $name,
                kind: $ty::<$n>::KIND,
                labels: &[$($label),*],
                unit: $unit,
                help: $help,
                buckets: $buckets,
            });
        )*

        /// Every family Sluice exports.
        pub const FAMILIES: &[&Family] = &[$($id.family()),*];
    };
}

impl<const N: usize> Counters<N> {
    const KIND: Kind = Kind::Counter;
}
impl<const N: usize> Gauges<N> {
    const KIND: Kind = Kind::Gauge;
}
impl<const N: usize> Histograms<N> {
    const KIND: Kind = Kind::Histogram;
}

families! {
    FUNCTION_INVOCATIONS: Counters<3> = "sluice_function_invocations_total", [LABEL_FUNCTION, LABEL_DESTINATION, LABEL_OUTCOME], None, &[],
        "Insert-function invocations in delivery, by function, destination and outcome.";
    SOURCE_FUNCTION_INVOCATIONS: Counters<3> = "sluice_source_function_invocations_total", [LABEL_FUNCTION, LABEL_SOURCE, LABEL_OUTCOME], None, &[],
        "Source-function requests on the data listener, by function, source and outcome.";
    FUNCTION_DURATION: Histograms<1> = "sluice_function_duration_seconds", [LABEL_FUNCTION], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Run time of one insert-function invocation in its engine, seconds, by function.";
    HTTP_REQUESTS: Counters<2> = "sluice_http_requests_total", [LABEL_ROUTE, LABEL_STATUS], None, &[],
        "HTTP requests by route and status.";
    HTTP_REQUEST_DURATION: Histograms<1> = "sluice_http_request_duration_seconds", [LABEL_ROUTE], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Request latency by route.";
    HTTP_BODY_BYTES: Counters<0> = "sluice_http_request_body_bytes_total", [], Some(Unit::Bytes), &[],
        "Request body bytes as received (before decompression).";
    HTTP_IN_FLIGHT: Gauges<0> = "sluice_http_in_flight_requests", [], None, &[],
        "Requests being processed.";
    HTTP_CONNECTIONS: Gauges<0> = "sluice_http_open_connections", [], None, &[],
        "Open client connections.";
    HTTP_CONNECTIONS_REFUSED: Counters<0> = "sluice_http_connections_refused_total", [], None, &[],
        "Connections closed at accept because their client address had too many open.";
    EVENTS_RECEIVED: Counters<1> = "sluice_events_received_total", [LABEL_SOURCE], None, &[],
        "Events received, by source.";
    EVENTS_ACCEPTED: Counters<1> = "sluice_events_accepted_total", [LABEL_SOURCE], None, &[],
        "Events durably stored for delivery, by source (tracking-plan blocks excluded).";
    EVENTS_REJECTED: Counters<2> = "sluice_events_rejected_total", [LABEL_SOURCE, LABEL_REASON], None, &[],
        "Events rejected, by source and reason.";
    EVENTS_DEDUPLICATED: Counters<1> = "sluice_events_deduplicated_total", [LABEL_SOURCE], None, &[],
        "Events acknowledged but not stored again (messageId seen), by source.";
    EVENTS_SUPPRESSED: Counters<1> = "sluice_events_suppressed_total", [LABEL_SOURCE], None, &[],
        "Events acknowledged but neither stored nor forwarded because their userId is suppressed, by source.";
    SUPPRESSED_USERS: Gauges<0> = "sluice_suppressed_users", [], None, &[],
        "Suppressions (user ids, per workspace or source) this gateway holds.";
    SUPPRESSION_SEQ: Gauges<0> = "sluice_suppression_seq", [], None, &[],
        "The control plane's suppression-list position this gateway has applied.";
    DEDUP_EARLY_ROTATIONS: Counters<0> = "sluice_dedup_early_rotations_total", [], None, &[],
        "De-duplication generations dropped early to stay within `max_entries`.";
    AUTH_FAILURES: Counters<1> = "sluice_auth_failures_total", [LABEL_REASON], None, &[],
        "Requests refused for their write key, by reason.";
    RATE_LIMITED: Counters<1> = "sluice_rate_limited_total", [LABEL_SOURCE], None, &[],
        "Requests refused by a source's rate limit.";
    QUOTA_EXCEEDED: Counters<1> = "sluice_quota_exceeded_total", [LABEL_SOURCE], None, &[],
        "Requests refused because a monthly event quota of their source is used up.";
    CLIENT_METRICS: Counters<0> = "sluice_client_metrics_total", [], None, &[],
        "Client metrics payloads (/v1/m) received and discarded.";
    LOG_APPEND_DURATION: Histograms<0> = "sluice_log_append_duration_seconds", [], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Time from handing records to the log until they are durable.";
    LOG_FSYNC_DURATION: Histograms<0> = "sluice_log_fsync_duration_seconds", [], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Duration of one fdatasync.";
    LOG_APPENDED_BYTES: Counters<0> = "sluice_log_appended_bytes_total", [], Some(Unit::Bytes), &[],
        "Bytes appended to the log.";
    LOG_APPENDED_RECORDS: Counters<0> = "sluice_log_appended_records_total", [], None, &[],
        "Records appended to the log.";
    LOG_GROUP_SIZE: Histograms<0> = "sluice_log_group_commit_appends", [], None, GROUP_BUCKETS,
        "Appends made durable by one write and sync (group commit).";
    LOG_BYTES: Gauges<0> = "sluice_log_bytes", [], Some(Unit::Bytes), &[],
        "Bytes the log holds on disk.";
    LOG_SEGMENTS: Gauges<0> = "sluice_log_segments", [], None, &[],
        "Segment files in the log.";
    LOG_FULL: Counters<0> = "sluice_log_full_rejections_total", [], None, &[],
        "Appends refused because the log is at its byte bound.";
    LOG_WRITE_ERRORS: Counters<0> = "sluice_log_write_errors_total", [], None, &[],
        "Appends that failed with an I/O error.";
    LOG_TORN_TAILS: Counters<0> = "sluice_log_torn_tail_truncations_total", [], None, &[],
        "Torn tails truncated at start-up.";
    LOG_TORN_BYTES: Counters<0> = "sluice_log_torn_tail_bytes_total", [], Some(Unit::Bytes), &[],
        "Bytes cut off torn tails.";
    LOG_SEGMENTS_DELETED: Counters<0> = "sluice_log_segments_deleted_total", [], None, &[],
        "Segments removed by retention.";
    DELIVERY_DELIVERED: Counters<1> = "sluice_delivery_delivered_total", [LABEL_DESTINATION], None, &[],
        "Events delivered, by destination.";
    DELIVERY_WITHHELD: Counters<2> = "sluice_delivery_withheld_total", [LABEL_DESTINATION, LABEL_CATEGORY], None, &[],
        "Events kept from a destination because their consent did not cover a consent category of it, by destination and category (an event refused two categories counts under both).";
    DELIVERY_FAILED: Counters<2> = "sluice_delivery_failed_total", [LABEL_DESTINATION, LABEL_REASON], None, &[],
        "Failed send attempts, by destination and reason.";
    DELIVERY_RETRIED: Counters<1> = "sluice_delivery_retried_total", [LABEL_DESTINATION], None, &[],
        "Retries scheduled, by destination.";
    DELIVERY_DEAD_LETTERED: Counters<1> = "sluice_delivery_dead_lettered_total", [LABEL_DESTINATION], None, &[],
        "Events written to the dead-letter store, by destination.";
    DELIVERY_IN_FLIGHT: Gauges<1> = "sluice_delivery_in_flight", [LABEL_DESTINATION], None, &[],
        "Sends under way, by destination.";
    DELIVERY_LATENCY: Histograms<1> = "sluice_delivery_latency_seconds", [LABEL_DESTINATION], None, LATENCY_BUCKETS,
        "Time from receipt to delivery, seconds, by destination.";
    DELIVERY_LAG_EVENTS: Gauges<1> = "sluice_delivery_lag_events", [LABEL_DESTINATION], None, &[],
        "Log records a destination has not processed yet.";
    DELIVERY_LAG_SECONDS: Gauges<1> = "sluice_delivery_lag_seconds", [LABEL_DESTINATION], None, &[],
        "Age of the oldest event waiting for a destination, seconds.";
    DELIVERY_CIRCUIT: Gauges<1> = "sluice_delivery_circuit_state", [LABEL_DESTINATION], None, &[],
        "Circuit state by destination (0 closed, 1 open, 2 half-open).";
    DELIVERY_GAP: Counters<1> = "sluice_delivery_gap_events_total", [LABEL_DESTINATION], None, &[],
        "Events a destination never read: retention deleted them first, by destination.";
    DELIVERY_DESTINATIONS_REMOVED: Counters<1> = "sluice_delivery_destinations_removed_total", [LABEL_DESTINATION], None, &[],
        "Destinations removed from the catalog; their undelivered backlog was released, by destination.";
    DELIVERY_CURSOR_ERRORS: Counters<2> = "sluice_delivery_cursor_errors_total", [LABEL_DESTINATION, LABEL_REASON], None, &[],
        "Saved cursors that could not be used (corrupt, unreadable, or ahead of the log), by destination and reason.";
    DELIVERY_DEAD_LETTERS_UNREADABLE: Gauges<1> = "sluice_delivery_dead_letters_unreadable", [LABEL_DESTINATION], None, &[],
        "Dead-letter entries that cannot be read (kept, never replayed or deleted), by destination.";
    PROTOCOLS_VIOLATIONS: Counters<3> = "sluice_protocols_violations_total", [LABEL_SOURCE, LABEL_TYPE, LABEL_EVENT], None, &[],
        "Tracking-plan violations by source, violation type and planned event.";
    PROTOCOLS_BLOCKED: Counters<2> = "sluice_protocols_blocked_total", [LABEL_SOURCE, LABEL_REASON], None, &[],
        "Events blocked by a tracking plan, by source and reason.";
    PROTOCOLS_OMITTED: Counters<1> = "sluice_protocols_omitted_total", [LABEL_SOURCE], None, &[],
        "Properties or traits omitted by a tracking plan, by source.";
    PROTOCOLS_VALIDATION_DURATION: Histograms<0> = "sluice_protocols_validation_duration_seconds", [], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Time to review one event against its tracking plan and build what the plan decided.";
    CONTROL_REQUESTS: Counters<2> = "sluice_control_requests_total", [LABEL_ROUTE, LABEL_STATUS], None, &[],
        "Control-plane API requests by route and status.";
    CONTROL_REQUEST_DURATION: Histograms<1> = "sluice_control_request_duration_seconds", [LABEL_ROUTE], Some(Unit::Seconds), LATENCY_BUCKETS,
        "Control-plane API latency by route.";
    CONTROL_DENIALS: Counters<1> = "sluice_control_denials_total", [LABEL_REASON], None, &[],
        "Control-plane refusals by the policy's reason.";
    CONTROL_REVISION: Gauges<0> = "sluice_control_revision", [], None, &[],
        "The control plane's revision (length of its audit chain).";
    CATALOG_FEED_UP: Gauges<0> = "sluice_catalog_feed_up", [], None, &[],
        "1 while the catalog's source answers, 0 while the last good snapshot is served without it.";
    JETSTREAM_CONNECTED: Gauges<0> = "sluice_jetstream_connected", [], None, &[],
        "1 while connected to NATS JetStream, 0 while not.";
    CATALOG_VERSION: Gauges<0> = "sluice_catalog_version", [], None, &[],
        "Version of the catalog snapshot being served.";
    CATALOG_RELOADS: Counters<0> = "sluice_catalog_reloads_total", [], None, &[],
        "Catalog snapshots installed.";
    CATALOG_RELOAD_ERRORS: Counters<0> = "sluice_catalog_reload_errors_total", [], None, &[],
        "Catalog loads that failed; the last good snapshot stays in service.";
    CATALOG_SOURCES: Gauges<0> = "sluice_catalog_sources", [], None, &[],
        "Sources in the catalog.";
    CATALOG_WRITE_KEYS: Gauges<0> = "sluice_catalog_write_keys", [], None, &[],
        "Write keys in the catalog, revoked ones included.";
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed (with every family described) on first use.
pub fn metrics() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for family in FAMILIES.iter().filter(|f| !f.buckets.is_empty()) {
            builder = builder
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(family.name.to_owned()),
                    family.buckets,
                )
                .expect("bucket lists are non-empty constants");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // A second recorder (another library in the same process) keeps its own; ours
        // still renders what was recorded through it.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

#[allow(clippy::disallowed_macros)] // the one place the metrics macros are used
fn describe() {
    for f in FAMILIES {
        match (f.kind, f.unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(f.name, unit, f.help),
            (Kind::Counter, None) => describe_counter!(f.name, f.help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(f.name, unit, f.help),
            (Kind::Gauge, None) => describe_gauge!(f.name, f.help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(f.name, unit, f.help),
            (Kind::Histogram, None) => describe_histogram!(f.name, f.help),
        }
    }
}

/// Counters of one family whose last label is a bounded code (`reason`, `outcome`) and
/// whose other labels are fixed: each code's handle is made on the code's first use, then
/// found again without a registry look-up or an allocation.
pub struct ByCode<const N: usize> {
    family: Counters<N>,
    fixed: Vec<String>,
    made: std::sync::RwLock<Vec<(&'static str, metrics::Counter)>>,
}

impl<const N: usize> ByCode<N> {
    /// The counters of `family` with its first `N - 1` labels set to `fixed`.
    pub fn new(family: Counters<N>, fixed: &[&str]) -> Self {
        debug_assert_eq!(fixed.len() + 1, N, "{}", family.family().name);
        Self {
            family,
            fixed: fixed.iter().map(|v| (*v).to_owned()).collect(),
            made: std::sync::RwLock::default(),
        }
    }

    /// Adds `n` to the series of `code`.
    pub fn add(&self, code: &'static str, n: u64) {
        let made = self
            .made
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = made.iter().find(|(c, _)| *c == code) {
            counter.increment(n);
            return;
        }
        drop(made);
        let mut made = self
            .made
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, counter)) = made.iter().find(|(c, _)| *c == code) {
            counter.increment(n);
            return;
        }
        let values: [&str; N] =
            std::array::from_fn(|i| self.fixed.get(i).map_or(code, String::as_str));
        let counter = self.family.with(values);
        counter.increment(n);
        made.push((code, counter));
    }
}

impl<const N: usize> std::fmt::Debug for ByCode<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByCode")
            .field("family", &self.family.family().name)
            .field("fixed", &self.fixed)
            .finish_non_exhaustive()
    }
}

/// One unit of a gauge that goes up and down (a request in flight, an open connection),
/// held: taken when made, given back when dropped, so no early return, error or
/// cancelled future (a client gone mid-request, a worker stopped mid-send) can leave it
/// counted.
#[must_use = "the unit is given back when this is dropped"]
pub struct Held(metrics::Gauge);

impl Held {
    /// Takes one unit of `gauge`.
    pub fn of(gauge: &metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Installs the tracing subscriber (`RUST_LOG` overrides the configured filter).
/// Safe to call more than once: later calls keep the first subscriber.
pub fn init_tracing(config: &Telemetry) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_unit_is_given_back_however_its_holder_ends() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let cell = Arc::new(AtomicU64::new(0.0_f64.to_bits()));
        let gauge = metrics::Gauge::from_arc(Arc::clone(&cell));
        let value = || f64::from_bits(cell.load(Ordering::Relaxed));
        let early = |fail: bool| -> Result<(), ()> {
            let _held = Held::of(&gauge);
            if fail {
                return Err(());
            }
            Ok(())
        };
        assert!(early(true).is_err());
        assert!(early(false).is_ok());
        assert!((value() - 0.0).abs() < f64::EPSILON);
        // A future dropped while it waits, as a request whose client went away.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let pending = async {
                let _held = Held::of(&gauge);
                std::future::pending::<()>().await;
            };
            let cut = tokio::time::timeout(std::time::Duration::from_millis(10), pending).await;
            assert!(cut.is_err());
        });
        assert!((value() - 0.0).abs() < f64::EPSILON, "{}", value());
        let _one = Held::of(&gauge);
        assert!((value() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn every_family_is_declared_once_with_help() {
        let mut names = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} declared twice", f.name);
            assert!(
                f.name.starts_with("sluice_") && !f.help.is_empty(),
                "{}",
                f.name
            );
            assert_eq!(
                f.kind == Kind::Histogram,
                !f.buckets.is_empty(),
                "{}",
                f.name
            );
        }
    }
}
