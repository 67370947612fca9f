//! Which events a destination takes: enabled, connected to the event's source, allowed
//! by the event's consent ([`crate::consent`]) and its `integrations` object, and through
//! the destination's filters.

use serde_json::{Map, Value};

use super::Outgoing;
use crate::catalog::Destination;
use crate::consent::Refused;
pub use crate::record::Head;
use crate::record::Stored;

/// Why a destination does not take a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not for it: unreadable, blocked by a tracking plan, another source, switched off
    /// by `integrations`, or filtered out.
    NotWanted,
    /// Its consent does not cover these categories of the destination.
    Withheld(Refused),
}

/// The outgoing event of a stored record (at `offset`), if `destination` takes it: not
/// blocked by a tracking plan, consented, and [`wants`] it. A record that cannot be read
/// is skipped.
///
/// # Errors
/// Why the destination does not take it.
pub fn pick(destination: &Destination, offset: u64, payload: &[u8]) -> Result<Outgoing, Skip> {
    let record = Stored::read(payload)
        .ok()
        .filter(|r| !r.is_blocked())
        .ok_or(Skip::NotWanted)?;
    if !destination.takes_from(&record.source_id) {
        return Err(Skip::NotWanted);
    }
    let head = record.try_head();
    let refused = destination
        .consent
        .refused(&record.source_id, head.as_ref().ok());
    let head = head.unwrap_or_default();
    if refused != 0 {
        // Withheld only if it would have gone there otherwise: the count says what
        // consent alone kept from the destination.
        return Err(if wants(destination, &record.source_id, &head) {
            Skip::Withheld(refused)
        } else {
            Skip::NotWanted
        });
    }
    if !wants(destination, &record.source_id, &head) {
        return Err(Skip::NotWanted);
    }
    let received_at = head.received();
    drop(head);
    Ok(Outgoing {
        offset,
        received_at,
        source_id: record.source_id,
        event: record.event,
    })
}

/// Whether `destination` takes this event of `source_id`, consent aside.
pub fn wants(destination: &Destination, source_id: &str, head: &Head<'_>) -> bool {
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

fn filters_allow(destination: &Destination, head: &Head<'_>) -> bool {
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

    fn head(v: serde_json::Value) -> Head<'static> {
        // A head borrows its event's text: the tests keep theirs for good.
        let text: &'static str = Box::leak(v.to_string().into_boxed_str());
        serde_json::from_str(text).expect("head")
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

    /// Consent decides first; an event consent withholds counts as withheld only when the
    /// destination would have taken it otherwise.
    #[test]
    fn consent_withholds_before_integrations_and_filters() {
        let text = "[[sources]]\nid = \"web\"\nwithout_consent = \"withhold\"\n[[sources]]\nid = \"app\"\n\
            [[destinations]]\nid = \"d\"\nname = \"Ads\"\nsources = [\"web\", \"app\"]\ntype = \"file\"\n\
            consent_categories = [\"Advertising\"]\nsettings = { path = \"x\" }\n";
        let snapshot =
            Snapshot::try_build(1, &Document::parse(text).expect("valid")).expect("installable");
        let d = &snapshot.destinations()[0];
        let record = |source: &str, event: serde_json::Value| {
            serde_json::to_vec(&json!({"sourceId": source, "event": event})).expect("json")
        };
        let pick = |source: &str, event: serde_json::Value| pick(d, 0, &record(source, event));
        let consented = json!({"consent": {"categoryPreferences": {"Advertising": true}}});
        let refused = json!({"consent": {"categoryPreferences": {"Advertising": false}}});
        assert!(pick("app", json!({"type": "track", "context": consented})).is_ok());
        assert!(
            pick("app", json!({"type": "track"})).is_ok(),
            "app delivers without consent"
        );
        assert_eq!(
            pick("web", json!({"type": "track"})).err(),
            Some(Skip::Withheld(1))
        );
        assert_eq!(
            pick("app", json!({"type": "track", "context": refused})).err(),
            Some(Skip::Withheld(1))
        );
        assert_eq!(
            pick(
                "app",
                json!({"type": "track", "context": refused, "integrations": {"Ads": false}})
            )
            .err(),
            Some(Skip::NotWanted),
            "switched off anyway: not counted as withheld"
        );
        assert!(
            pick(
                "app",
                json!({"type": "track", "context": consented, "integrations": {"All": false}})
            )
            .is_err(),
            "consent does not override integrations"
        );
        assert!(
            pick("web", json!({"type": "track", "event": crate::consent::PREFERENCE_UPDATED, "context": refused}))
                .is_ok()
        );
        assert!(
            pick("web", json!({"type": "page", "event": crate::consent::PREFERENCE_UPDATED, "context": refused}))
                .is_err(),
            "only the track event is exempt"
        );
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
