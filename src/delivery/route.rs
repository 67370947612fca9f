//! Which events a destination takes: enabled, connected to the event's source, allowed
//! by the event's `integrations` object, and through the destination's filters.

use serde_json::{Map, Value};

use super::Outgoing;
use crate::catalog::Destination;
pub use crate::record::Head;
use crate::record::Stored;

/// The outgoing event of a stored record (at `offset`), if `destination` takes it: not
/// blocked by a tracking plan, and [`wants`] it. A record that cannot be read is skipped.
pub fn pick(destination: &Destination, offset: u64, payload: &[u8]) -> Option<Outgoing> {
    let record = Stored::read(payload).ok().filter(|r| !r.is_blocked())?;
    let head = record.head();
    wants(destination, &record.source_id, &head).then(|| Outgoing {
        offset,
        received_at: head.received(),
        source_id: record.source_id,
        event: record.event,
    })
}

/// Whether `destination` takes this event of `source_id`.
pub fn wants(destination: &Destination, source_id: &str, head: &Head) -> bool {
    destination.takes_from(source_id)
        && integrations_allow(head.integrations.as_ref(), &destination.name)
        && filters_allow(destination, head)
}

/// Segment's rule: `integrations[name]` if present (false, or anything but `false`),
/// else `integrations.All` (default true). Names are case-sensitive; an options object
/// (e.g. `{"Amplitude": {"session_id": 1}}`) counts as enabled.
pub fn integrations_allow(integrations: Option<&Map<String, Value>>, name: &str) -> bool {
    let Some(map) = integrations else { return true };
    let enabled = |v: &Value| !matches!(v, Value::Bool(false));
    match map.get(name) {
        Some(v) => enabled(v),
        None => map.get("All").is_none_or(enabled),
    }
}

fn filters_allow(destination: &Destination, head: &Head) -> bool {
    let f = &destination.filter;
    if !f.event_types.is_empty() && !f.event_types.contains(&head.kind) {
        return false;
    }
    if head.kind == "track" {
        let name = head.event.as_deref().unwrap_or("");
        if !f.event_names_allow.is_empty() && !f.event_names_allow.iter().any(|n| n == name) {
            return false;
        }
        if f.event_names_deny.iter().any(|n| n == name) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Document, Snapshot};
    use serde_json::json;

    fn destination(extra: &str) -> std::sync::Arc<Destination> {
        let text = format!(
            "[[sources]]\nid = \"web\"\n[[sources]]\nid = \"app\"\n[[destinations]]\nid = \"d\"\nname = \"Amplitude\"\nsources = [\"web\"]\ntype = \"file\"\nsettings = {{ path = \"x\" }}\n{extra}\n"
        );
        let snapshot =
            Snapshot::try_build(1, &Document::parse(&text).expect("valid")).expect("installable");
        std::sync::Arc::clone(&snapshot.destinations()[0])
    }

    fn head(v: serde_json::Value) -> Head {
        serde_json::from_value(v).expect("head")
    }

    #[test]
    fn integrations_object_follows_segment_rules() {
        let d = destination("");
        let track =
            |i: serde_json::Value| head(json!({"type":"track","event":"E","integrations":i}));
        assert!(wants(&d, "web", &head(json!({"type":"track"}))));
        assert!(
            !wants(&d, "app", &head(json!({"type":"track"}))),
            "not connected"
        );
        assert!(wants(&d, "web", &track(json!({}))));
        assert!(!wants(&d, "web", &track(json!({"All": false}))));
        assert!(wants(
            &d,
            "web",
            &track(json!({"All": false, "Amplitude": true}))
        ));
        assert!(wants(
            &d,
            "web",
            &track(json!({"All": false, "Amplitude": {"session_id": 1}}))
        ));
        assert!(!wants(&d, "web", &track(json!({"Amplitude": false}))));
        assert!(
            !wants(&d, "web", &track(json!({"All": false, "amplitude": true}))),
            "case-sensitive"
        );
        assert!(!wants(
            &destination("enabled = false"),
            "web",
            &track(json!({}))
        ));
    }

    #[test]
    fn filters_by_type_and_name() {
        let d = destination(
            "filter = { event_types = [\"track\", \"identify\"], event_names_deny = [\"Noise\"] }",
        );
        assert!(wants(&d, "web", &head(json!({"type":"identify"}))));
        assert!(!wants(&d, "web", &head(json!({"type":"page"}))));
        assert!(!wants(
            &d,
            "web",
            &head(json!({"type":"track","event":"Noise"}))
        ));
        let allow = destination("filter = { event_names_allow = [\"Order Completed\"] }");
        assert!(wants(
            &allow,
            "web",
            &head(json!({"type":"track","event":"Order Completed"}))
        ));
        assert!(!wants(
            &allow,
            "web",
            &head(json!({"type":"track","event":"Other"}))
        ));
        assert!(
            wants(&allow, "web", &head(json!({"type":"page"}))),
            "names filter only track events"
        );
    }
}
