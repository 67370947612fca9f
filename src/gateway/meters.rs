//! Metric handles of the request path, made once and kept.
//!
//! Making a handle hashes its key and searches the registry; on the request path that
//! was ~3 % of the server's CPU. The gateway's own series are made when it starts, a
//! route's on its first request; a source's ([`SourceMeters`]) once per catalog version,
//! and dropped with the version that no longer has the source. Moving a counter is then
//! an atomic add: no look-up in the registry and no allocation.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};

use crate::catalog::Snapshot;
use crate::protocols::Decision;
use crate::telemetry::{self, ByCode};

/// The request path's metric handles.
pub struct Meters {
    /// Requests being processed.
    pub in_flight: Gauge,
    /// Body bytes as received.
    pub body_bytes: Counter,
    /// Time to review one event against its tracking plan.
    pub validation: Histogram,
    /// Refused write keys and credentials, by reason.
    pub auth_failures: ByCode<1>,
    /// `/v1/m` payloads discarded.
    pub client_metrics: Counter,
    requests: DashMap<(&'static str, u16), Counter>,
    durations: DashMap<&'static str, Histogram>,
    sources: ArcSwap<BySource>,
}

/// The sources' meters for one catalog version.
#[derive(Default)]
struct BySource {
    version: u64,
    meters: HashMap<Box<str>, Arc<SourceMeters>>,
}

impl Default for Meters {
    fn default() -> Self {
        Self {
            in_flight: telemetry::HTTP_IN_FLIGHT.with([]),
            body_bytes: telemetry::HTTP_BODY_BYTES.with([]),
            validation: telemetry::PROTOCOLS_VALIDATION_DURATION.with([]),
            auth_failures: ByCode::new(telemetry::AUTH_FAILURES, &[]),
            client_metrics: telemetry::CLIENT_METRICS.with([]),
            requests: DashMap::new(),
            durations: DashMap::new(),
            sources: ArcSwap::default(),
        }
    }
}

impl Meters {
    /// Counts one answered request and its latency.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        self.requests
            .entry((route, status))
            .or_insert_with(|| telemetry::HTTP_REQUESTS.with([route, &status.to_string()]))
            .increment(1);
        self.durations
            .entry(route)
            .or_insert_with(|| telemetry::HTTP_REQUEST_DURATION.with([route]))
            .record(seconds);
    }

    /// The meters of source `id` of `snapshot`. The first request that sees a newer
    /// catalog version makes the set for it: the meters of sources it still has are
    /// kept, those of sources it dropped go.
    pub fn source(&self, snapshot: &Snapshot, id: &str) -> Arc<SourceMeters> {
        let current = self.sources.load();
        if current.version >= snapshot.version()
            && let Some(meters) = current.meters.get(id)
        {
            return Arc::clone(meters);
        }
        if current.version > snapshot.version() {
            // A request that began before the newer version was installed.
            return Arc::new(SourceMeters::new(id));
        }
        let mut found = None;
        self.sources.rcu(|current| {
            if current.version > snapshot.version() {
                // A newer version was installed meanwhile: leave it.
                found = current.meters.get(id).cloned();
                return Arc::clone(current);
            }
            // The sources the snapshot still has keep their meters (a source's are made
            // on its first request, so a quiet source exports nothing).
            let mut next = BySource {
                version: snapshot.version(),
                meters: snapshot
                    .sources()
                    .iter()
                    .filter_map(|s| {
                        let meters = current.meters.get(s.id.as_str())?;
                        Some((Box::from(s.id.as_str()), Arc::clone(meters)))
                    })
                    .collect(),
            };
            let meters = next
                .meters
                .entry(id.into())
                .or_insert_with(|| Arc::new(SourceMeters::new(id)));
            found = Some(Arc::clone(meters));
            Arc::new(next)
        });
        found.unwrap_or_else(|| Arc::new(SourceMeters::new(id)))
    }
}

/// Counters by violation type.
type ByKind = Vec<(&'static str, Counter)>;

/// One source's series.
pub struct SourceMeters {
    /// Events received.
    pub received: Counter,
    /// Events stored for delivery.
    pub accepted: Counter,
    /// Events acknowledged but not stored again.
    pub deduplicated: Counter,
    /// Events acknowledged but dropped: their user is suppressed.
    pub suppressed: Counter,
    /// Requests refused by the rate limit.
    pub rate_limited: Counter,
    /// Requests refused by a monthly quota.
    pub quota_exceeded: Counter,
    /// Events refused, by reason.
    pub rejected: ByCode<2>,
    omitted: Counter,
    blocked: ByCode<2>,
    /// Violations by event label, then type.
    violations: RwLock<HashMap<Box<str>, ByKind>>,
    id: Box<str>,
}

impl SourceMeters {
    fn new(id: &str) -> Self {
        Self {
            received: telemetry::EVENTS_RECEIVED.with([id]),
            accepted: telemetry::EVENTS_ACCEPTED.with([id]),
            deduplicated: telemetry::EVENTS_DEDUPLICATED.with([id]),
            suppressed: telemetry::EVENTS_SUPPRESSED.with([id]),
            rate_limited: telemetry::RATE_LIMITED.with([id]),
            quota_exceeded: telemetry::QUOTA_EXCEEDED.with([id]),
            rejected: ByCode::new(telemetry::EVENTS_REJECTED, &[id]),
            omitted: telemetry::PROTOCOLS_OMITTED.with([id]),
            blocked: ByCode::new(telemetry::PROTOCOLS_BLOCKED, &[id]),
            violations: RwLock::default(),
            id: id.into(),
        }
    }

    /// Counts what a tracking plan decided about one event.
    pub fn decision(&self, decision: &Decision<'_>) {
        for kind in &decision.violations {
            self.violation(decision.label, kind);
        }
        if decision.omitted > 0 {
            self.omitted.increment(decision.omitted as u64);
        }
        if let Some(reason) = decision.blocked {
            self.blocked.add(reason, 1);
        }
    }

    fn violation(&self, label: &str, kind: &'static str) {
        let known = self
            .violations
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = known
            .get(label)
            .and_then(|kinds| kinds.iter().find(|(k, _)| *k == kind))
        {
            counter.increment(1);
            return;
        }
        drop(known);
        let mut known = self
            .violations
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let kinds = known.entry(label.into()).or_default();
        if let Some((_, counter)) = kinds.iter().find(|(k, _)| *k == kind) {
            counter.increment(1);
            return;
        }
        let counter = telemetry::PROTOCOLS_VIOLATIONS.with([&self.id, kind, label]);
        counter.increment(1);
        kinds.push((kind, counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Document;

    fn snapshot(version: u64, ids: &[&str]) -> Snapshot {
        let text: String = ids
            .iter()
            .map(|id| format!("[[sources]]\nid = \"{id}\"\n"))
            .collect();
        Snapshot::try_build(version, &Document::parse(&text).expect("valid")).expect("installable")
    }

    #[test]
    fn a_sources_meters_are_made_once_per_version_and_go_with_it() {
        let meters = Meters::default();
        let one = snapshot(1, &["web", "app"]);
        let web = meters.source(&one, "web");
        assert!(Arc::ptr_eq(&web, &meters.source(&one, "web")));
        // A source that sent nothing has no meters (and exports no series).
        assert_eq!(meters.sources.load().meters.len(), 1);
        let _app = meters.source(&one, "app");
        assert_eq!(meters.sources.load().meters.len(), 2);

        // The next version drops `app`: `web` keeps its meters, `app`'s go.
        let two = snapshot(2, &["web"]);
        assert!(Arc::ptr_eq(&web, &meters.source(&two, "web")));
        let held = meters.sources.load();
        assert_eq!(held.version, 2);
        assert!(held.meters.contains_key("web") && !held.meters.contains_key("app"));

        // A request still holding the older version neither rebuilds nor brings `app` back.
        let _late = meters.source(&one, "app");
        assert_eq!(meters.sources.load().version, 2);
        assert!(!meters.sources.load().meters.contains_key("app"));
    }
}
