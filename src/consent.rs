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

impl Consent {
    /// The categories of this destination that `event` (of `source_id`) does not consent
    /// to: zero when it may be delivered. `context` is the event's `context`, raw.
    #[must_use]
    pub fn refused(
        &self,
        source_id: &str,
        event: Option<&str>,
        context: Option<&RawValue>,
    ) -> Refused {
        if self.categories.is_empty() || event == Some(PREFERENCE_UPDATED) {
            return 0;
        }
        match preferences(context) {
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
    /// `categoryPreferences` is there: the object (`None` when it is not an object,
    /// which consents to nothing).
    Given(Option<Map<String, Value>>),
    /// No `categoryPreferences`: the source's default decides.
    Absent,
}

#[derive(Deserialize)]
struct ContextPart<'a> {
    #[serde(borrow, default)]
    consent: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ConsentPart {
    #[serde(rename = "categoryPreferences", default)]
    category_preferences: Option<Value>,
}

fn preferences(context: Option<&RawValue>) -> Preferences {
    let consent = context
        .and_then(|c| serde_json::from_str::<ContextPart<'_>>(c.get()).ok())
        .and_then(|c| c.consent)
        .and_then(|c| serde_json::from_str::<ConsentPart>(c.get()).ok())
        .and_then(|c| c.category_preferences);
    match consent {
        None | Some(Value::Null) => Preferences::Absent,
        Some(Value::Object(map)) => Preferences::Given(Some(map)),
        Some(_) => Preferences::Given(None),
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

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("json")
    }

    fn refused(c: &Consent, source: &str, event: Option<&str>, context: &str) -> Vec<String> {
        let context = raw(context);
        c.named(c.refused(source, event, Some(&context)))
            .map(str::to_owned)
            .collect()
    }

    /// Every destination shape against every kind of preferences and both defaults.
    #[test]
    fn matrix_of_categories_and_preferences() {
        let prefs = |p: &str| format!(r#"{{"consent":{{"categoryPreferences":{p}}}}}"#);
        // (destination categories, context, refused with `deliver`, with `withhold`)
        type Case<'a> = (&'a [&'a str], &'a str, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            // (destination categories, context, refused with `deliver`, with `withhold`)
            (&[], &prefs(r#"{"Analytics":false}"#), &[], &[]),
            (&[], "{}", &[], &[]),
            (&["Analytics"], &prefs(r#"{"Analytics":true}"#), &[], &[]),
            (
                &["Analytics"],
                &prefs(r#"{"Analytics":false}"#),
                &["Analytics"],
                &["Analytics"],
            ),
            (&["Analytics"], &prefs("{}"), &["Analytics"], &["Analytics"]),
            (
                &["Analytics"],
                &prefs(r#"{"Analytics":"true"}"#),
                &["Analytics"],
                &["Analytics"],
            ),
            (
                &["Analytics"],
                &prefs(r#"{"analytics":true}"#),
                &["Analytics"],
                &["Analytics"],
            ),
            (
                &["Analytics"],
                &prefs("[true]"),
                &["Analytics"],
                &["Analytics"],
            ),
            (&["Analytics"], &prefs("null"), &[], &["Analytics"]),
            (&["Analytics"], "{}", &[], &["Analytics"]),
            (&["Analytics"], r#"{"consent":{}}"#, &[], &["Analytics"]),
            (&["Analytics"], r#"{"consent":"yes"}"#, &[], &["Analytics"]),
            (
                &["Analytics", "Advertising"],
                &prefs(r#"{"Analytics":true,"Advertising":false}"#),
                &["Advertising"],
                &["Advertising"],
            ),
            (
                &["Analytics", "Advertising"],
                &prefs(r#"{"Analytics":true,"Advertising":true,"Other":false}"#),
                &[],
                &[],
            ),
            (
                &["Analytics", "Advertising"],
                "{}",
                &[],
                &["Analytics", "Advertising"],
            ),
        ];
        for (categories, context, deliver, withhold) in cases {
            let c = consent(categories, &["strict"]);
            assert_eq!(
                refused(&c, "lax", Some("E"), context),
                *deliver,
                "{categories:?} {context} deliver"
            );
            assert_eq!(
                refused(&c, "strict", Some("E"), context),
                *withhold,
                "{categories:?} {context} withhold"
            );
        }
    }

    #[test]
    fn preference_updates_reach_every_destination() {
        let c = consent(&["Analytics"], &["web"]);
        let denied = r#"{"consent":{"categoryPreferences":{"Analytics":false}}}"#;
        assert_eq!(refused(&c, "web", Some("E"), denied), ["Analytics"]);
        assert!(refused(&c, "web", Some(PREFERENCE_UPDATED), denied).is_empty());
        assert!(refused(&c, "web", Some(PREFERENCE_UPDATED), "{}").is_empty());
    }

    #[test]
    fn no_context_follows_the_default() {
        let c = consent(&["Analytics"], &["web"]);
        assert_eq!(c.refused("web", None, None), 1);
        assert_eq!(c.refused("app", None, None), 0);
        assert_eq!(
            c.refused("web", None, Some(&raw("7"))),
            1,
            "a context that is not an object has no preferences"
        );
    }
}
