//! What a source's tracking plan decides about one event, as a value the request path
//! acts on: what to count, which copies to forward, and whether the event is blocked.
//! Nothing here touches metrics or the log: the gateway meters a [`Decision`] and
//! stores what it says.

use simd_json::prelude::ValueAsScalar as _;

use super::{SourceName, SourceProtocols, Violation, review, violation_event};
use crate::event::{self, Kind, Prepared};

/// The plan's verdict on one event that broke or lost something (a clean event has none).
#[derive(Debug)]
pub struct Decision<'p> {
    /// The event as metrics name it: a planned event's name, the call type, or
    /// `unplanned` (borrowed from the plan: bounded, and no allocation to count it).
    pub label: &'p str,
    /// The violation types found, one per violation (`Required`, `Invalid Type`…).
    pub violations: Vec<&'static str>,
    /// Properties or traits removed from the event.
    pub omitted: usize,
    /// Why the event is blocked (stored, never delivered), if it is.
    pub blocked: Option<&'static str>,
    /// The JSON stored with a blocked event: why it was blocked and what was found.
    pub block_record: Option<Vec<u8>>,
    /// Copies to append for other sources: `(source id, event JSON)` (`Violation
    /// Generated` events, a blocked event's copy).
    pub forwards: Vec<(String, Vec<u8>)>,
}

/// Reviews one prepared event against `sp` (which may omit keys from it) and decides;
/// `None` when the event is clean and nothing was removed.
pub fn decide<'p>(
    sp: &'p SourceProtocols,
    source: SourceName<'_>,
    prepared: &mut Prepared<'_>,
) -> Option<Decision<'p>> {
    let review = review(sp, source.id, prepared.kind, &mut prepared.message);
    if review.violations.is_empty() && review.omitted.is_empty() {
        return None;
    }
    let name = match prepared.kind {
        Kind::Track => prepared
            .message
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or_default(),
        _ => "",
    };
    let mut forwards = Vec::new();
    if let Some(target) = &sp.controls.forward_violations_to {
        for v in &review.violations {
            let event = violation_event(&sp.plan, source, prepared, v);
            forwards.push((target.clone(), event));
        }
    }
    let block_record = review.blocked.map(|reason| {
        if let Some(target) = &sp.controls.forward_blocked_to {
            let mut event = Vec::new();
            event::write_object(&prepared.message, &mut event);
            forwards.push((target.clone(), event));
        }
        blocked_record(reason, &review.violations)
    });
    Some(Decision {
        label: sp.plan.event_label(prepared.kind, name),
        violations: review.violations.iter().map(|v| v.kind).collect(),
        omitted: review.omitted.len() + review.omitted_on_violation.len(),
        blocked: review.blocked,
        block_record,
        forwards,
    })
}

/// What is stored with a blocked event.
fn blocked_record(reason: &str, violations: &[Violation]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Blocked<'a> {
        reason: &'a str,
        violations: &'a [Violation],
    }
    // Strings and a slice of plain structs: serialising cannot fail.
    serde_json::to_vec(&Blocked { reason, violations }).unwrap_or_default()
}
