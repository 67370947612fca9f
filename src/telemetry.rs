//! Metric names and registration, and tracing setup.
//!
//! Every metric family is declared here once, with its help text; code elsewhere uses
//! the constants. Label values are bounded: routes are fixed names, sources come from
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

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed (with every family described) on first use.
pub fn metrics() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(LOG_GROUP_SIZE.to_owned()),
                    GROUP_BUCKETS,
                )
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();
        // A second recorder (another library in the same process) keeps its own; ours
        // still renders what was recorded through it.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status.");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Request latency by route."
    );
    describe_counter!(
        HTTP_BODY_BYTES,
        Unit::Bytes,
        "Request body bytes as received (before decompression)."
    );
    describe_gauge!(HTTP_IN_FLIGHT, "Requests being processed.");
    describe_gauge!(HTTP_CONNECTIONS, "Open client connections.");
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        "Connections closed at accept because their client address had too many open."
    );
    describe_counter!(EVENTS_RECEIVED, "Events received, by source.");
    describe_counter!(
        EVENTS_ACCEPTED,
        "Events durably stored for delivery, by source (tracking-plan blocks excluded)."
    );
    describe_counter!(EVENTS_REJECTED, "Events rejected, by source and reason.");
    describe_counter!(
        EVENTS_DEDUPLICATED,
        "Events acknowledged but not stored again (messageId seen), by source."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Requests refused for their write key, by reason."
    );
    describe_counter!(RATE_LIMITED, "Requests refused by a source's rate limit.");
    describe_counter!(
        CLIENT_METRICS,
        "Client metrics payloads (/v1/m) received and discarded."
    );
    describe_histogram!(
        LOG_APPEND_DURATION,
        Unit::Seconds,
        "Time from handing records to the log until they are durable."
    );
    describe_histogram!(
        LOG_FSYNC_DURATION,
        Unit::Seconds,
        "Duration of one fdatasync."
    );
    describe_counter!(
        LOG_APPENDED_BYTES,
        Unit::Bytes,
        "Bytes appended to the log."
    );
    describe_counter!(LOG_APPENDED_RECORDS, "Records appended to the log.");
    describe_histogram!(
        LOG_GROUP_SIZE,
        "Appends made durable by one write and sync (group commit)."
    );
    describe_gauge!(LOG_BYTES, Unit::Bytes, "Bytes the log holds on disk.");
    describe_gauge!(LOG_SEGMENTS, "Segment files in the log.");
    describe_counter!(
        LOG_FULL,
        "Appends refused because the log is at its byte bound."
    );
    describe_counter!(LOG_WRITE_ERRORS, "Appends that failed with an I/O error.");
    describe_counter!(LOG_TORN_TAILS, "Torn tails truncated at start-up.");
    describe_counter!(LOG_TORN_BYTES, Unit::Bytes, "Bytes cut off torn tails.");
    describe_counter!(LOG_SEGMENTS_DELETED, "Segments removed by retention.");
    describe_counter!(
        DELIVERY_GAP,
        "Events a destination never read because retention deleted them first, by destination."
    );
    describe_counter!(
        DELIVERY_DESTINATIONS_REMOVED,
        "Destinations removed from the catalog; their undelivered backlog was released, by destination."
    );
    describe_counter!(
        DELIVERY_CURSOR_ERRORS,
        "Saved delivery cursors that could not be used (unreadable, corrupt, ahead of the log), by destination and reason."
    );
    describe_gauge!(
        DELIVERY_DEAD_LETTERS_UNREADABLE,
        "Dead-letter entries that cannot be read (kept, never replayed or deleted), by destination."
    );
    describe_counter!(
        PROTOCOLS_VIOLATIONS,
        "Tracking-plan violations by source, violation type and planned event."
    );
    describe_counter!(
        PROTOCOLS_BLOCKED,
        "Events blocked by a tracking plan, by source and reason."
    );
    describe_counter!(
        PROTOCOLS_OMITTED,
        "Properties or traits omitted by a tracking plan, by source."
    );
    describe_histogram!(
        PROTOCOLS_VALIDATION_DURATION,
        Unit::Seconds,
        "Time to review one event against its tracking plan."
    );
    describe_gauge!(
        CATALOG_VERSION,
        "Version of the catalog snapshot being served."
    );
    describe_counter!(CATALOG_RELOADS, "Catalog snapshots installed.");
    describe_counter!(
        CATALOG_RELOAD_ERRORS,
        "Catalog loads that failed; the last good snapshot stays in service."
    );
    describe_gauge!(CATALOG_SOURCES, "Sources in the catalog.");
    describe_gauge!(
        CATALOG_WRITE_KEYS,
        "Write keys in the catalog, revoked ones included."
    );
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
