//! Metric names and registration, and tracing setup.
//!
//! Every metric family is declared here once ([`FAMILIES`]: name, kind, unit, help,
//! buckets); code elsewhere builds handles with [`counter`], [`gauge`] and [`histogram`]
//! (the `metrics` macros are banned elsewhere by `clippy.toml`). Label values are bounded: routes are fixed names, sources come from
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
/// Counter: insert-function invocations in delivery, by function, destination and outcome
/// (`event`, `passed`, `dropped`, `retry`, `invalid`, `error`, `timeout`, `memory`,
/// `too_large`, `load`).
pub const FUNCTION_INVOCATIONS: &str = "sluice_function_invocations_total";
/// Counter: source-function requests on the data listener, by function, source and
/// outcome (`event`, `passed`, `dropped`, a failure's name, `load`, `host`).
pub const SOURCE_FUNCTION_INVOCATIONS: &str = "sluice_source_function_invocations_total";
/// Histogram: one insert-function invocation's run time in its engine, seconds, by function.
pub const FUNCTION_DURATION: &str = "sluice_function_duration_seconds";

/// Counter: HTTP requests by route and status.
pub const HTTP_REQUESTS: &str = "sluice_http_requests_total";
/// Histogram: request latency by route, seconds.
pub const HTTP_REQUEST_DURATION: &str = "sluice_http_request_duration_seconds";
/// Counter: request body bytes received as sent (before decompression).
pub const HTTP_BODY_BYTES: &str = "sluice_http_request_body_bytes_total";
/// Gauge: requests being processed.
pub const HTTP_IN_FLIGHT: &str = "sluice_http_in_flight_requests";
/// Gauge: open connections.
pub const HTTP_CONNECTIONS: &str = "sluice_http_open_connections";
/// Counter: connections closed at accept because their address had too many open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "sluice_http_connections_refused_total";
/// Counter: events received by source.
pub const EVENTS_RECEIVED: &str = "sluice_events_received_total";
/// Counter: events stored for delivery, by source (tracking-plan blocks excluded).
pub const EVENTS_ACCEPTED: &str = "sluice_events_accepted_total";
/// Counter: events rejected by source and reason.
pub const EVENTS_REJECTED: &str = "sluice_events_rejected_total";
/// Counter: events acknowledged but not stored again because their messageId was seen.
pub const EVENTS_DEDUPLICATED: &str = "sluice_events_deduplicated_total";
/// Counter: de-duplication generations dropped early to stay within `max_entries`.
pub const DEDUP_EARLY_ROTATIONS: &str = "sluice_dedup_early_rotations_total";
/// Counter: requests refused for their write key, by reason.
pub const AUTH_FAILURES: &str = "sluice_auth_failures_total";
/// Counter: requests refused by a source's rate limit.
pub const RATE_LIMITED: &str = "sluice_rate_limited_total";
/// Counter: requests refused because a monthly event quota of their source is used up.
pub const QUOTA_EXCEEDED: &str = "sluice_quota_exceeded_total";
/// Counter: client metrics payloads (`/v1/m`) received and discarded.
pub const CLIENT_METRICS: &str = "sluice_client_metrics_total";
/// Histogram: time from handing records to the log until they are durable, seconds.
pub const LOG_APPEND_DURATION: &str = "sluice_log_append_duration_seconds";
/// Histogram: time of one fdatasync, seconds.
pub const LOG_FSYNC_DURATION: &str = "sluice_log_fsync_duration_seconds";
/// Counter: bytes appended to the log (records with their headers).
pub const LOG_APPENDED_BYTES: &str = "sluice_log_appended_bytes_total";
/// Counter: records appended to the log.
pub const LOG_APPENDED_RECORDS: &str = "sluice_log_appended_records_total";
/// Histogram: appends written together by one write (+ one sync): the group-commit size.
pub const LOG_GROUP_SIZE: &str = "sluice_log_group_commit_appends";
/// Gauge: bytes the log holds on disk.
pub const LOG_BYTES: &str = "sluice_log_bytes";
/// Gauge: segment files in the log.
pub const LOG_SEGMENTS: &str = "sluice_log_segments";
/// Counter: appends refused because the log is at its byte bound.
pub const LOG_FULL: &str = "sluice_log_full_rejections_total";
/// Counter: appends that failed with an I/O error.
pub const LOG_WRITE_ERRORS: &str = "sluice_log_write_errors_total";
/// Counter: torn tails truncated at start-up.
pub const LOG_TORN_TAILS: &str = "sluice_log_torn_tail_truncations_total";
/// Counter: bytes cut off by those truncations.
pub const LOG_TORN_BYTES: &str = "sluice_log_torn_tail_bytes_total";
/// Counter: segments removed by retention.
pub const LOG_SEGMENTS_DELETED: &str = "sluice_log_segments_deleted_total";
/// Counter: events delivered, by destination.
pub const DELIVERY_DELIVERED: &str = "sluice_delivery_delivered_total";
/// Counter: failed send attempts, by destination and reason.
pub const DELIVERY_FAILED: &str = "sluice_delivery_failed_total";
/// Counter: retries scheduled, by destination.
pub const DELIVERY_RETRIED: &str = "sluice_delivery_retried_total";
/// Counter: events written to the dead-letter store, by destination.
pub const DELIVERY_DEAD_LETTERED: &str = "sluice_delivery_dead_lettered_total";
/// Gauge: sends under way, by destination.
pub const DELIVERY_IN_FLIGHT: &str = "sluice_delivery_in_flight";
/// Histogram: time from receipt to delivery, seconds, by destination.
pub const DELIVERY_LATENCY: &str = "sluice_delivery_latency_seconds";
/// Gauge: log records a destination has not processed yet.
pub const DELIVERY_LAG_EVENTS: &str = "sluice_delivery_lag_events";
/// Gauge: age of the oldest event waiting for a destination, seconds.
pub const DELIVERY_LAG_SECONDS: &str = "sluice_delivery_lag_seconds";
/// Gauge: circuit state by destination (0 closed, 1 open, 2 half-open).
pub const DELIVERY_CIRCUIT: &str = "sluice_delivery_circuit_state";
/// Counter: events a destination never got because retention deleted them before it
/// read them (its cursor was below the oldest segment), by destination.
pub const DELIVERY_GAP: &str = "sluice_delivery_gap_events_total";
/// Counter: destinations removed from the catalog (their backlog released), by destination.
pub const DELIVERY_DESTINATIONS_REMOVED: &str = "sluice_delivery_destinations_removed_total";
/// Counter: saved cursors that could not be used (unreadable, corrupt, or ahead of the
/// log), by destination and reason.
pub const DELIVERY_CURSOR_ERRORS: &str = "sluice_delivery_cursor_errors_total";
/// Gauge: dead-letter entries that cannot be read (kept, never replayed), by destination.
pub const DELIVERY_DEAD_LETTERS_UNREADABLE: &str = "sluice_delivery_dead_letters_unreadable";
/// Label: a violation type (`Required`, `Invalid Type`…).
pub const LABEL_TYPE: &str = "type";
/// Label: a planned event name, the call type, or `unplanned`.
pub const LABEL_EVENT: &str = "event";
/// Counter: tracking-plan violations by source, type and (planned) event.
pub const PROTOCOLS_VIOLATIONS: &str = "sluice_protocols_violations_total";
/// Counter: events blocked by a tracking plan, by source and reason.
pub const PROTOCOLS_BLOCKED: &str = "sluice_protocols_blocked_total";
/// Counter: properties/traits omitted by a tracking plan, by source.
pub const PROTOCOLS_OMITTED: &str = "sluice_protocols_omitted_total";
/// Histogram: time to review one event against its plan, seconds.
pub const PROTOCOLS_VALIDATION_DURATION: &str = "sluice_protocols_validation_duration_seconds";
/// Counter: control-plane API requests by route (its path template) and status.
pub const CONTROL_REQUESTS: &str = "sluice_control_requests_total";
/// Histogram: control-plane API latency by route, seconds.
pub const CONTROL_REQUEST_DURATION: &str = "sluice_control_request_duration_seconds";
/// Counter: control-plane refusals by the policy's reason (`role_denies`, `hidden`, …).
pub const CONTROL_DENIALS: &str = "sluice_control_denials_total";
/// Gauge: the control plane's revision (length of the audit chain).
pub const CONTROL_REVISION: &str = "sluice_control_revision";
/// Gauge: 1 while the catalog's source (file, store or remote control plane) answers,
/// 0 while the last good snapshot is served without it.
pub const CATALOG_FEED_UP: &str = "sluice_catalog_feed_up";
/// Gauge: 1 while the process is connected to NATS JetStream, 0 while it is not (only
/// with `log.backend = "jetstream"`).
pub const JETSTREAM_CONNECTED: &str = "sluice_jetstream_connected";
/// Gauge: version of the catalog snapshot being served.
pub const CATALOG_VERSION: &str = "sluice_catalog_version";
/// Counter: catalog snapshots installed.
pub const CATALOG_RELOADS: &str = "sluice_catalog_reloads_total";
/// Counter: catalog loads that failed (the last good snapshot stays).
pub const CATALOG_RELOAD_ERRORS: &str = "sluice_catalog_reload_errors_total";
/// Gauge: sources in the catalog.
pub const CATALOG_SOURCES: &str = "sluice_catalog_sources";
/// Gauge: write keys in the catalog (including revoked ones).
pub const CATALOG_WRITE_KEYS: &str = "sluice_catalog_write_keys";

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

/// One metric family, declared once: name, kind, unit, help text and (histograms)
/// buckets. Code elsewhere builds handles with [`counter`], [`gauge`], [`histogram`].
#[derive(Debug)]
pub struct Family {
    /// Exported name.
    pub name: &'static str,
    /// Series kind.
    pub kind: Kind,
    /// Unit, if any.
    pub unit: Option<Unit>,
    /// Help text.
    pub help: &'static str,
    /// Histogram buckets (empty for counters and gauges).
    pub buckets: &'static [f64],
}

/// Every family Sluice exports.
pub const FAMILIES: &[Family] = &[
    Family {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        help: "HTTP requests by route and status.",
        buckets: &[],
    },
    Family {
        name: HTTP_REQUEST_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Request latency by route.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: HTTP_BODY_BYTES,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        help: "Request body bytes as received (before decompression).",
        buckets: &[],
    },
    Family {
        name: HTTP_IN_FLIGHT,
        kind: Kind::Gauge,
        unit: None,
        help: "Requests being processed.",
        buckets: &[],
    },
    Family {
        name: HTTP_CONNECTIONS,
        kind: Kind::Gauge,
        unit: None,
        help: "Open client connections.",
        buckets: &[],
    },
    Family {
        name: HTTP_CONNECTIONS_REFUSED,
        kind: Kind::Counter,
        unit: None,
        help: "Connections closed at accept because their client address had too many open.",
        buckets: &[],
    },
    Family {
        name: EVENTS_RECEIVED,
        kind: Kind::Counter,
        unit: None,
        help: "Events received, by source.",
        buckets: &[],
    },
    Family {
        name: EVENTS_ACCEPTED,
        kind: Kind::Counter,
        unit: None,
        help: "Events durably stored for delivery, by source (tracking-plan blocks excluded).",
        buckets: &[],
    },
    Family {
        name: EVENTS_REJECTED,
        kind: Kind::Counter,
        unit: None,
        help: "Events rejected, by source and reason.",
        buckets: &[],
    },
    Family {
        name: EVENTS_DEDUPLICATED,
        kind: Kind::Counter,
        unit: None,
        help: "Events acknowledged but not stored again (messageId seen), by source.",
        buckets: &[],
    },
    Family {
        name: DEDUP_EARLY_ROTATIONS,
        kind: Kind::Counter,
        unit: None,
        help: "De-duplication generations dropped early to stay within `max_entries`.",
        buckets: &[],
    },
    Family {
        name: AUTH_FAILURES,
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused for their write key, by reason.",
        buckets: &[],
    },
    Family {
        name: RATE_LIMITED,
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused by a source's rate limit.",
        buckets: &[],
    },
    Family {
        name: QUOTA_EXCEEDED,
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused because a monthly event quota of their source is used up.",
        buckets: &[],
    },
    Family {
        name: CLIENT_METRICS,
        kind: Kind::Counter,
        unit: None,
        help: "Client metrics payloads (/v1/m) received and discarded.",
        buckets: &[],
    },
    Family {
        name: LOG_APPEND_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time from handing records to the log until they are durable.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: LOG_FSYNC_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Duration of one fdatasync.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: LOG_APPENDED_BYTES,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        help: "Bytes appended to the log.",
        buckets: &[],
    },
    Family {
        name: LOG_APPENDED_RECORDS,
        kind: Kind::Counter,
        unit: None,
        help: "Records appended to the log.",
        buckets: &[],
    },
    Family {
        name: LOG_GROUP_SIZE,
        kind: Kind::Histogram,
        unit: None,
        help: "Appends made durable by one write and sync (group commit).",
        buckets: GROUP_BUCKETS,
    },
    Family {
        name: LOG_BYTES,
        kind: Kind::Gauge,
        unit: Some(Unit::Bytes),
        help: "Bytes the log holds on disk.",
        buckets: &[],
    },
    Family {
        name: LOG_SEGMENTS,
        kind: Kind::Gauge,
        unit: None,
        help: "Segment files in the log.",
        buckets: &[],
    },
    Family {
        name: LOG_FULL,
        kind: Kind::Counter,
        unit: None,
        help: "Appends refused because the log is at its byte bound.",
        buckets: &[],
    },
    Family {
        name: LOG_WRITE_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Appends that failed with an I/O error.",
        buckets: &[],
    },
    Family {
        name: LOG_TORN_TAILS,
        kind: Kind::Counter,
        unit: None,
        help: "Torn tails truncated at start-up.",
        buckets: &[],
    },
    Family {
        name: LOG_TORN_BYTES,
        kind: Kind::Counter,
        unit: Some(Unit::Bytes),
        help: "Bytes cut off torn tails.",
        buckets: &[],
    },
    Family {
        name: LOG_SEGMENTS_DELETED,
        kind: Kind::Counter,
        unit: None,
        help: "Segments removed by retention.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_DELIVERED,
        kind: Kind::Counter,
        unit: None,
        help: "Events delivered, by destination.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_FAILED,
        kind: Kind::Counter,
        unit: None,
        help: "Failed send attempts, by destination and reason.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_RETRIED,
        kind: Kind::Counter,
        unit: None,
        help: "Retries scheduled, by destination.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_DEAD_LETTERED,
        kind: Kind::Counter,
        unit: None,
        help: "Events written to the dead-letter store, by destination.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_IN_FLIGHT,
        kind: Kind::Gauge,
        unit: None,
        help: "Sends under way, by destination.",
        buckets: &[],
    },
    Family {
        name: FUNCTION_INVOCATIONS,
        kind: Kind::Counter,
        unit: None,
        help: "Insert-function invocations in delivery, by function, destination and outcome.",
        buckets: &[],
    },
    Family {
        name: SOURCE_FUNCTION_INVOCATIONS,
        kind: Kind::Counter,
        unit: None,
        help: "Source-function requests on the data listener, by function, source and outcome.",
        buckets: &[],
    },
    Family {
        name: FUNCTION_DURATION,
        kind: Kind::Histogram,
        unit: None,
        help: "Run time of one insert-function invocation in its engine, seconds, by function.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: DELIVERY_LATENCY,
        kind: Kind::Histogram,
        unit: None,
        help: "Time from receipt to delivery, seconds, by destination.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: DELIVERY_LAG_EVENTS,
        kind: Kind::Gauge,
        unit: None,
        help: "Log records a destination has not processed yet.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_LAG_SECONDS,
        kind: Kind::Gauge,
        unit: None,
        help: "Age of the oldest event waiting for a destination, seconds.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_CIRCUIT,
        kind: Kind::Gauge,
        unit: None,
        help: "Circuit state by destination (0 closed, 1 open, 2 half-open).",
        buckets: &[],
    },
    Family {
        name: DELIVERY_DESTINATIONS_REMOVED,
        kind: Kind::Counter,
        unit: None,
        help: "Destinations removed from the catalog; their undelivered backlog was released, by destination.",
        buckets: &[],
    },
    Family {
        name: DELIVERY_DEAD_LETTERS_UNREADABLE,
        kind: Kind::Gauge,
        unit: None,
        help: "Dead-letter entries that cannot be read (kept, never replayed or deleted), by destination.",
        buckets: &[],
    },
    Family {
        name: PROTOCOLS_VIOLATIONS,
        kind: Kind::Counter,
        unit: None,
        help: "Tracking-plan violations by source, violation type and planned event.",
        buckets: &[],
    },
    Family {
        name: PROTOCOLS_BLOCKED,
        kind: Kind::Counter,
        unit: None,
        help: "Events blocked by a tracking plan, by source and reason.",
        buckets: &[],
    },
    Family {
        name: PROTOCOLS_OMITTED,
        kind: Kind::Counter,
        unit: None,
        help: "Properties or traits omitted by a tracking plan, by source.",
        buckets: &[],
    },
    Family {
        name: PROTOCOLS_VALIDATION_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time to review one event against its tracking plan.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: CONTROL_REQUESTS,
        kind: Kind::Counter,
        unit: None,
        help: "Control-plane API requests by route and status.",
        buckets: &[],
    },
    Family {
        name: CONTROL_REQUEST_DURATION,
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Control-plane API latency by route.",
        buckets: LATENCY_BUCKETS,
    },
    Family {
        name: CONTROL_DENIALS,
        kind: Kind::Counter,
        unit: None,
        help: "Control-plane refusals by the policy's reason.",
        buckets: &[],
    },
    Family {
        name: CONTROL_REVISION,
        kind: Kind::Gauge,
        unit: None,
        help: "The control plane's revision (length of its audit chain).",
        buckets: &[],
    },
    Family {
        name: CATALOG_FEED_UP,
        kind: Kind::Gauge,
        unit: None,
        help: "1 while the catalog's source answers, 0 while the last good snapshot is served without it.",
        buckets: &[],
    },
    Family {
        name: JETSTREAM_CONNECTED,
        kind: Kind::Gauge,
        unit: None,
        help: "1 while connected to NATS JetStream, 0 while not.",
        buckets: &[],
    },
    Family {
        name: CATALOG_VERSION,
        kind: Kind::Gauge,
        unit: None,
        help: "Version of the catalog snapshot being served.",
        buckets: &[],
    },
    Family {
        name: CATALOG_RELOADS,
        kind: Kind::Counter,
        unit: None,
        help: "Catalog snapshots installed.",
        buckets: &[],
    },
    Family {
        name: CATALOG_RELOAD_ERRORS,
        kind: Kind::Counter,
        unit: None,
        help: "Catalog loads that failed; the last good snapshot stays in service.",
        buckets: &[],
    },
    Family {
        name: CATALOG_SOURCES,
        kind: Kind::Gauge,
        unit: None,
        help: "Sources in the catalog.",
        buckets: &[],
    },
    Family {
        name: CATALOG_WRITE_KEYS,
        kind: Kind::Gauge,
        unit: None,
        help: "Write keys in the catalog, revoked ones included.",
        buckets: &[],
    },
];

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

/// Labels of a series: `(label key, value)`.
pub type Labels<'a> = &'a [(&'static str, String)];

/// A handle to a counter of a declared family (keep it where it is used often: building
/// one hashes the key and searches the registry).
#[allow(clippy::disallowed_macros)] // the one place the metrics macros are used
pub fn counter(name: &'static str, labels: Labels<'_>) -> metrics::Counter {
    metrics::counter!(name, labels)
}

/// A handle to a gauge of a declared family.
#[allow(clippy::disallowed_macros)] // the one place the metrics macros are used
pub fn gauge(name: &'static str, labels: Labels<'_>) -> metrics::Gauge {
    metrics::gauge!(name, labels)
}

/// A handle to a histogram of a declared family.
#[allow(clippy::disallowed_macros)] // the one place the metrics macros are used
pub fn histogram(name: &'static str, labels: Labels<'_>) -> metrics::Histogram {
    metrics::histogram!(name, labels)
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
