//! Metric handles for the per-request series, looked up once and kept.
//!
//! `metrics::counter!(name, labels)` hashes the key and searches the registry on every
//! call; on the request path that was ~3 % of the server's CPU. Handles are created on
//! first use per route/status or source (both bounded sets) and reused.

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};

use crate::telemetry;

/// The request path's metric handles.
pub struct Meters {
    /// Requests being processed.
    pub in_flight: Gauge,
    /// Body bytes as received.
    pub body_bytes: Counter,
    /// Time to review one event against its tracking plan.
    pub validation: Histogram,
    requests: DashMap<(&'static str, u16), Counter>,
    durations: DashMap<&'static str, Histogram>,
    sources: DashMap<String, (Counter, Counter)>,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            in_flight: telemetry::gauge(telemetry::HTTP_IN_FLIGHT, &[]),
            body_bytes: telemetry::counter(telemetry::HTTP_BODY_BYTES, &[]),
            validation: telemetry::histogram(telemetry::PROTOCOLS_VALIDATION_DURATION, &[]),
            requests: DashMap::new(),
            durations: DashMap::new(),
            sources: DashMap::new(),
        }
    }
}

impl Meters {
    /// Counts one answered request and its latency.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .entry((route, status))
            .or_insert_with(|| {
                telemetry::counter(
                    telemetry::HTTP_REQUESTS,
                    &[
                        (telemetry::LABEL_ROUTE, route.into()),
                        (telemetry::LABEL_STATUS, status.to_string()),
                    ],
                )
            })
            .increment(1);
        self.durations
            .entry(route)
            .or_insert_with(|| {
                telemetry::histogram(
                    telemetry::HTTP_REQUEST_DURATION,
                    &[(telemetry::LABEL_ROUTE, route.into())],
                )
            })
            .record(seconds);
    }

    /// Events received and accepted for a source.
    pub fn events(&self, source: &str, received: u64, accepted: u64) {
        if let Some(pair) = self.sources.get(source) {
            pair.0.increment(received);
            pair.1.increment(accepted);
            return;
        }
        let pair = self.sources.entry(source.to_owned()).or_insert_with(|| {
            (
                telemetry::counter(
                    telemetry::EVENTS_RECEIVED,
                    &[(telemetry::LABEL_SOURCE, source.to_owned())],
                ),
                telemetry::counter(
                    telemetry::EVENTS_ACCEPTED,
                    &[(telemetry::LABEL_SOURCE, source.to_owned())],
                ),
            )
        });
        pair.0.increment(received);
        pair.1.increment(accepted);
    }
}
