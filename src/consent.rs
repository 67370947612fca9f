//! Consent-aware forwarding: whether an event's consent lets it reach a destination.
//!
//! A destination may carry consent categories (the category ids of the consent
//! management platform: `Advertising`, `C0004`, …). An event reaches it only when its
//! `context.consent.categoryPreferences` (as analytics.js's consent wrapper stamps every
//! event) is `true` for every one of them; a category the preferences leave out is not
//! consented, and preferences that are not an object consent to nothing. An event with no
//! `categoryPreferences` follows its source's [`WithoutConsent`] default. A destination
//! without categories gets events whatever their consent. `Segment Consent Preference
//! Updated` events carry the consent change itself: they reach every destination, as
//! Segment sends them. The `integrations` object and the destination's filters apply on
//! top of this decision, never instead of it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::record::Head;

/// The track event analytics.js's consent wrapper sends when a user changes consent.
pub const PREFERENCE_UPDATED: &str = "Segment Consent Preference Updated";

/// Most consent categories one destination may carry.
pub const MAX_CATEGORIES: usize = 32;

/// Longest consent category id, in characters.
pub const MAX_CATEGORY_CHARS: usize = 100;

/// What a source's events that carry no consent preferences do at destinations with
/// consent categories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithoutConsent {
    /// They are delivered (Segment's behaviour: no preferences, no enforcement).
    #[default]
    Deliver,
    /// They are withheld.
    Withhold,
}

impl WithoutConsent {
    /// Whether this is the default (`deliver`), for leaving it out of documents.
    #[must_use]
    pub fn is_default(&self) -> bool {
        *self == Self::Deliver
    }
}

/// A destination's consent rule, built once per catalog version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consent {
    /// Categories an event must consent to, every one (empty: no enforcement).
    pub categories: Vec<String>,
    /// The connected sources whose events without preferences are withheld.
    pub withholding: Vec<String>,
}

/// The categories an event did not consent to, as bits of [`Consent::categories`]
/// (bit `i` for category `i`); zero when it may be delivered.
pub type Refused = u32;

// Refusals are bits of a `Refused`: the bound must fit.
const _: () = assert!(MAX_CATEGORIES <= Refused::BITS as usize);

impl Consent {
    /// The categories of this destination that an event of `source_id` does not consent
    /// to: zero when it may be delivered. `head` is the stored event's head, `None` when
    /// it cannot be read: such an event consents to nothing.
    #[must_use]
    pub fn refused(&self, source_id: &str, head: Option<&Head<'_>>) -> Refused {
        if self.categories.is_empty() {
            return 0;
        }
        let Some(head) = head else {
            return self.refused_by(|_| false);
        };
        if head.kind == "track" && head.event.as_deref() == Some(PREFERENCE_UPDATED) {
            return 0;
        }
        match preferences(head.context) {
            Preferences::Given(given) => self
                .refused_by(|c| given.as_ref().and_then(|g| g.get(c)) == Some(&Value::Bool(true))),
            Preferences::Absent if self.withholding.iter().any(|s| s == source_id) => {
                self.refused_by(|_| false)
            }
            Preferences::Absent => 0,
        }
    }

    fn refused_by(&self, consented: impl Fn(&str) -> bool) -> Refused {
        self.categories
            .iter()
            .enumerate()
            .filter(|(_, c)| !consented(c))
            .fold(0, |bits, (i, _)| bits | (1 << i))
    }

    /// The categories named by `refused`.
    pub fn named(&self, refused: Refused) -> impl Iterator<Item = &str> {
        self.categories
            .iter()
            .enumerate()
            .filter(move |(i, _)| refused & (1 << i) != 0)
            .map(|(_, c)| c.as_str())
    }
}

/// An event's consent preferences.
enum Preferences {
    /// Preferences are given: the object (`None` when they are there but not an object,
    /// which consents to nothing).
    Given(Option<Map<String, Value>>),
    /// No consent information: the source's default decides.
    Absent,
}

/// No `context.consent`, a `null` one, or one without `categoryPreferences`: absent.
/// `categoryPreferences` an object: given. Anything else there (a `consent` that is not
/// an object, preferences that are `null` or not an object): given, consenting to
/// nothing.
fn preferences(context: Option<&RawValue>) -> Preferences {
    #[derive(Deserialize)]
    struct ContextPart<'a> {
        #[serde(borrow, default)]
        consent: Option<&'a RawValue>,
    }
    let consent = context
        .and_then(|c| serde_json::from_str::<ContextPart<'_>>(c.get()).ok())
        .and_then(|c| c.consent);
    let Some(consent) = consent else {
        return Preferences::Absent;
    };
    match serde_json::from_str::<Value>(consent.get()) {
        Ok(Value::Null) => Preferences::Absent,
        Ok(Value::Object(mut consent)) => match consent.remove("categoryPreferences") {
            None => Preferences::Absent,
            Some(Value::Object(given)) => Preferences::Given(Some(given)),
            Some(_) => Preferences::Given(None),
        },
        _ => Preferences::Given(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(categories: &[&str], withholding: &[&str]) -> Consent {
        Consent {
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            withholding: withholding.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    /// What is refused to a stored event (its JSON text), read as delivery reads it.
    fn refused_raw(c: &Consent, source: &str, event: &str) -> Refused {
        c.refused(
            source,
            serde_json::from_str::<Head<'_>>(event).ok().as_ref(),
        )
    }

    /// The categories refused to a track event `name` of `source` with `context`.
    fn refused(c: &Consent, source: &str, name: &str, context: &str) -> Vec<String> {
        let event = format!(r#"{{"type":"track","event":"{name}","context":{context}}}"#);
        c.named(refused_raw(c, source, &event))
            .map(str::to_owned)
            .collect()
    }

    /// Every destination shape against every kind of preferences and both defaults.
    #[test]
    fn matrix_of_categories_and_preferences() {
        let prefs = |p: &str| format!(r#"{{"consent":{{"categoryPreferences":{p}}}}}"#);
        let (a, both) = (&["Analytics"][..], &["Analytics", "Advertising"][..]);
        // (destination categories, context, refused with `deliver`, with `withhold`)
        type Case<'a> = (&'a [&'a str], String, &'a [&'a str], &'a [&'a str]);
        let cases: Vec<Case<'_>> = vec![
            (&[], prefs(r#"{"Analytics":false}"#), &[], &[]),
            (&[], "{}".into(), &[], &[]),
            (a, prefs(r#"{"Analytics":true}"#), &[], &[]),
            (a, prefs(r#"{"Analytics":false}"#), a, a),
            (a, prefs("{}"), a, a),
            (a, prefs(r#"{"Analytics":"true"}"#), a, a),
            (a, prefs(r#"{"analytics":true}"#), a, a),
            (a, prefs("[true]"), a, a),
            (a, prefs("null"), a, a),
            (a, "{}".into(), &[], a),
            (a, "null".into(), &[], a),
            (a, r#"{"consent":null}"#.into(), &[], a),
            (a, r#"{"consent":{}}"#.into(), &[], a),
            (a, r#"{"consent":"yes"}"#.into(), a, a),
            (a, r#"{"consent":["Analytics"]}"#.into(), a, a),
            (
                both,
                prefs(r#"{"Analytics":true,"Advertising":false}"#),
                &["Advertising"],
                &["Advertising"],
            ),
            (
                both,
                prefs(r#"{"Analytics":true,"Advertising":true,"Other":false}"#),
                &[],
                &[],
            ),
            (both, "{}".into(), &[], both),
        ];
        for (categories, context, deliver, withhold) in &cases {
            let c = consent(categories, &["strict"]);
            assert_eq!(
                refused(&c, "lax", "E", context),
                *deliver,
                "{categories:?} {context} deliver"
            );
            assert_eq!(
                refused(&c, "strict", "E", context),
                *withhold,
                "{categories:?} {context} withhold"
            );
        }
    }

    #[test]
    fn preference_updates_reach_every_destination() {
        let c = consent(&["Analytics"], &["web"]);
        let denied = r#"{"consent":{"categoryPreferences":{"Analytics":false}}}"#;
        assert_eq!(refused(&c, "web", "E", denied), ["Analytics"]);
        assert!(refused(&c, "web", PREFERENCE_UPDATED, denied).is_empty());
        assert!(refused(&c, "web", PREFERENCE_UPDATED, "{}").is_empty());
        let page =
            format!(r#"{{"type":"page","event":"{PREFERENCE_UPDATED}","context":{denied}}}"#);
        assert_eq!(refused_raw(&c, "web", &page), 1, "only the track event");
    }

    /// Fields of unexpected types, and events that are not objects, never make an event
    /// consent-free.
    #[test]
    fn odd_events_fail_closed() {
        let c = consent(&["Analytics"], &[]);
        let denied = r#""context":{"consent":{"categoryPreferences":{"Analytics":false}}}"#;
        for event in [
            format!(r#"{{"type":"identify","event":{{"x":1}},{denied}}}"#),
            format!(r#"{{"type":7,"event":[1],{denied}}}"#),
        ] {
            assert_eq!(refused_raw(&c, "web", &event), 1, "{event}");
        }
        assert_eq!(refused_raw(&c, "web", "[1,2]"), 1);
        assert_eq!(refused_raw(&c, "web", "7"), 1);
        assert_eq!(
            refused_raw(&c, "web", r#"{"type":"track"}"#),
            0,
            "deliver default"
        );
        assert_eq!(
            consent(&[], &[]).refused("web", None),
            0,
            "no categories: not read"
        );
    }
}
