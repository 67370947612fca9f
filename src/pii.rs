//! PII controls at the edge: per source, paths of an event to drop, hash or mask before
//! it is stored, so the log, the dead letters and every destination only ever see the
//! result.
//!
//! A path is dotted from the event's root (`properties.email`, `traits.phone`,
//! `context.ip`, `context.traits.email`); a `*` segment stands for every key of an object
//! or every element of an array (`properties.products.*.email`). A path that is not in
//! an event leaves it alone.
//!
//! - **drop** removes the value (and its key).
//! - **hash** replaces it with the lower-case hex SHA-256 of a salt (one per workspace,
//!   from the control plane; `pii_salt` in a catalog file) followed by the value: a
//!   string's UTF-8 bytes, any other value's JSON text. The same value hashes alike
//!   across the sources of a workspace, so hashed ids still join; without the salt a
//!   hash cannot be reversed by hashing guesses.
//! - **mask** replaces a string or number with a string of `*` of its length, keeping
//!   its last four characters when it has at least eight (`+1 555 010 4321` →
//!   `***********4321`); any other value becomes `"***"`.
//!
//! Rules run in order, after the event is normalised (so `context.ip` is there) and
//! before de-duplication and the tracking plan: the plan validates, and its violation
//! reports and forwarded copies carry, the protected values.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use simd_json::borrowed::{Object, Value};
use simd_json::prelude::*;

/// Most rules one source may have.
pub const MAX_RULES: usize = 100;
/// Most segments in a path.
pub const MAX_SEGMENTS: usize = 16;
/// Most `*` segments in a path (each multiplies the work).
pub const MAX_WILDCARDS: usize = 2;
/// Fewest characters a salt may have.
pub const MIN_SALT_CHARS: usize = 16;
/// Top-level fields no rule may touch: Sluice and delivery rely on them.
pub const PROTECTED_FIELDS: [&str; 9] = [
    "type",
    "event",
    "messageId",
    "timestamp",
    "receivedAt",
    "sentAt",
    "originalTimestamp",
    "integrations",
    "writeKey",
];

/// What a rule does to the value at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Remove it.
    Drop,
    /// Replace it with its salted SHA-256 (hex).
    Hash,
    /// Replace it with `*`s, keeping the last four characters of a long one.
    Mask,
}

/// One rule, as the catalog writes it: `{ path = "properties.email", action = "hash" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Dotted path from the event's root; `*` for every key or element.
    pub path: String,
    /// What to do there.
    pub action: Action,
}

/// A workspace's hashing salt: kept out of `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Salt(pub String);

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(redacted)")
    }
}

/// What is wrong with a rule, if anything.
pub fn rule_problem(rule: &RuleDoc) -> Option<&'static str> {
    let segments: Vec<&str> = rule.path.split('.').collect();
    if rule.path.is_empty() || segments.iter().any(|s| s.is_empty()) {
        Some("a PII path is dotted names, none of them empty")
    } else if segments.len() > MAX_SEGMENTS {
        Some("a PII path has at most 16 segments")
    } else if segments
        .first()
        .is_some_and(|s| PROTECTED_FIELDS.contains(s) || *s == "*")
    {
        Some(
            "a PII path may not start with * nor touch type, event, messageId, timestamps, integrations or writeKey",
        )
    } else if segments.iter().filter(|s| **s == "*").count() > MAX_WILDCARDS {
        Some("a PII path has at most 2 * segments")
    } else if segments[0] == "context"
        && segments.get(1).is_none_or(|s| *s == "*" || *s == "consent")
    {
        // Consent routing reads `context.consent` after the rules have run.
        Some("a PII path may not touch context.consent (nor all of context)")
    } else {
        None
    }
}

/// Whether any of `rules` hashes (and so needs a salt).
pub fn hashes(rules: &[RuleDoc]) -> bool {
    rules.iter().any(|r| r.action == Action::Hash)
}

/// What is wrong with a source's rules, if anything (their salt aside: [`salt_problem`]).
pub fn rules_problem(rules: &[RuleDoc]) -> Option<&'static str> {
    if rules.len() > MAX_RULES {
        return Some("a source has at most 100 PII rules");
    }
    rules.iter().find_map(rule_problem)
}

/// What is wrong with the salt `rules` hash with, if anything.
pub fn salt_problem(rules: &[RuleDoc], salt: Option<&str>) -> Option<&'static str> {
    match salt {
        None if hashes(rules) => Some("hash rules need a pii_salt"),
        Some(salt) if salt.chars().count() < MIN_SALT_CHARS => {
            Some("pii_salt has at least 16 characters")
        }
        _ => None,
    }
}

/// A source's compiled rules and its salt, built once per catalog version.
#[derive(Clone, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<(Vec<String>, Action)>,
    salt: Arc<[u8]>,
}

impl fmt::Debug for Rules {
    /// The salt is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Rules {
    /// The rules of a source (checked by [`rules_problem`] and [`salt_problem`]); `None`
    /// when there are none,
    /// so a source without rules costs nothing.
    pub fn compile(docs: &[RuleDoc], salt: Option<&str>) -> Option<Arc<Self>> {
        (!docs.is_empty()).then(|| {
            Arc::new(Self {
                rules: docs
                    .iter()
                    .map(|r| (r.path.split('.').map(str::to_owned).collect(), r.action))
                    .collect(),
                salt: salt.unwrap_or_default().as_bytes().into(),
            })
        })
    }

    /// Applies every rule to `message`, in order.
    pub fn apply(&self, message: &mut Object<'_>) {
        for (path, action) in &self.rules {
            self.at(message, path, *action);
        }
    }

    fn at(&self, object: &mut Object<'_>, path: &[String], action: Action) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if first != "*" {
            self.under(object, first, rest, action);
        } else if !rest.is_empty() {
            for value in object.values_mut() {
                self.inside(value, rest, action);
            }
        } else if action == Action::Drop {
            object.clear();
        } else {
            for value in object.values_mut() {
                *value = self.replaced(value, action);
            }
        }
    }

    /// Applies the rest of a path under `object[key]`.
    fn under(&self, object: &mut Object<'_>, key: &str, rest: &[String], action: Action) {
        if rest.is_empty() {
            match action {
                Action::Drop => {
                    object.remove(key);
                }
                Action::Hash | Action::Mask => {
                    if let Some(value) = object.get_mut(key) {
                        *value = self.replaced(value, action);
                    }
                }
            }
            return;
        }
        if let Some(value) = object.get_mut(key) {
            self.inside(value, rest, action);
        }
    }

    fn inside(&self, value: &mut Value<'_>, path: &[String], action: Action) {
        match value {
            Value::Object(object) => self.at(object, path, action),
            Value::Array(items) => {
                let Some((first, rest)) = path.split_first() else {
                    return;
                };
                if first == "*" {
                    if rest.is_empty() && action == Action::Drop {
                        items.clear();
                    }
                    for item in items.iter_mut() {
                        if rest.is_empty() {
                            *item = self.replaced(item, action);
                        } else {
                            self.inside(item, rest, action);
                        }
                    }
                    return;
                }
                let Some(i) = first.parse::<usize>().ok().filter(|i| *i < items.len()) else {
                    return;
                };
                match (rest.is_empty(), action) {
                    (true, Action::Drop) => {
                        items.remove(i);
                    }
                    (true, _) => items[i] = self.replaced(&items[i], action),
                    (false, _) => self.inside(&mut items[i], rest, action),
                }
            }
            _ => {}
        }
    }

    fn replaced<'a>(&self, value: &Value<'_>, action: Action) -> Value<'a> {
        let text: Cow<'_, str> = match value {
            Value::String(s) => Cow::Borrowed(s.as_ref()),
            other => Cow::Owned(other.encode()),
        };
        match action {
            Action::Hash => {
                let mut hasher = Sha256::new();
                hasher.update(&self.salt);
                hasher.update(text.as_bytes());
                Value::from(hex::encode(hasher.finalize()))
            }
            _ if matches!(value, Value::String(_)) || value.is_number() => {
                Value::from(masked(&text))
            }
            _ => Value::from("***"),
        }
    }
}

/// `*` for every character, keeping the last four of a text of eight or more.
fn masked(text: &str) -> String {
    let n = text.chars().count();
    let keep = if n >= 8 { 4 } else { 0 };
    text.chars()
        .enumerate()
        .map(|(i, c)| if i + keep < n { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, Action)]) -> Arc<Rules> {
        let docs: Vec<RuleDoc> = list
            .iter()
            .map(|(p, a)| RuleDoc {
                path: (*p).to_owned(),
                action: *a,
            })
            .collect();
        Rules::compile(&docs, Some("a-salt-of-16-chars")).expect("rules")
    }

    fn applied(rules: &Rules, event: serde_json::Value) -> serde_json::Value {
        let mut text = event.to_string().into_bytes();
        let mut value = simd_json::to_borrowed_value(&mut text).expect("json");
        if let Value::Object(object) = &mut value {
            rules.apply(object);
        }
        serde_json::from_str(&value.encode()).expect("json")
    }

    fn sha(text: &str) -> String {
        hex::encode(Sha256::digest(format!("a-salt-of-16-chars{text}")))
    }

    #[test]
    fn drops_hashes_and_masks_at_paths() {
        let r = rules(&[
            ("properties.email", Action::Hash),
            ("traits.phone", Action::Mask),
            ("context.ip", Action::Drop),
            ("properties.products.*.coupon", Action::Mask),
            ("properties.age", Action::Hash),
            ("properties.pin", Action::Mask),
            ("properties.address", Action::Mask),
            ("properties.missing.deep", Action::Drop),
        ]);
        let out = applied(
            &r,
            serde_json::json!({
                "type": "track", "event": "E",
                "properties": {"email": "ann@example.com", "age": 42, "pin": "1234",
                               "address": {"street": "x"},
                               "products": [{"coupon": "SAVE-2026-XY"}, {"sku": 1}]},
                "traits": {"phone": "+1 555 010 4321"},
                "context": {"ip": "203.0.113.7", "locale": "en"}
            }),
        );
        assert_eq!(out["properties"]["email"], sha("ann@example.com"));
        assert_eq!(out["properties"]["age"], sha("42"));
        assert_eq!(out["traits"]["phone"], "***********4321");
        assert_eq!(out["properties"]["pin"], "****");
        assert_eq!(out["properties"]["address"], "***");
        assert_eq!(out["properties"]["products"][0]["coupon"], "********6-XY");
        assert_eq!(
            out["properties"]["products"][1],
            serde_json::json!({"sku": 1})
        );
        assert!(out["context"].get("ip").is_none());
        assert_eq!(out["context"]["locale"], "en");
        assert_eq!(out["event"], "E");
    }

    #[test]
    fn wildcards_and_array_indexes() {
        let r = rules(&[
            ("traits.*", Action::Drop),
            ("properties.list.0", Action::Mask),
        ]);
        let out = applied(
            &r,
            serde_json::json!({"traits": {"a": 1, "b": 2}, "properties": {"list": ["secret-value", "b"]}}),
        );
        assert_eq!(out["traits"], serde_json::json!({}));
        assert_eq!(
            out["properties"]["list"],
            serde_json::json!(["********alue", "b"])
        );
        let drop = rules(&[("properties.list.*", Action::Drop)]);
        let out = applied(
            &drop,
            serde_json::json!({"properties": {"list": [1, 2, 3]}}),
        );
        assert_eq!(out["properties"]["list"], serde_json::json!([]));
    }

    #[test]
    fn problems_are_named() {
        let rule = |p: &str, a| RuleDoc {
            path: p.to_owned(),
            action: a,
        };
        for bad in [
            "",
            "properties..x",
            "messageId",
            "type",
            "*.email",
            "integrations.All",
            "context",
            "context.*",
            "context.consent",
            "context.consent.categoryPreferences.Ads",
            "properties.*.*.*",
        ] {
            assert!(rule_problem(&rule(bad, Action::Drop)).is_some(), "{bad}");
        }
        let deep = vec!["a"; MAX_SEGMENTS + 1].join(".");
        assert!(rule_problem(&rule(&deep, Action::Drop)).is_some());
        assert!(rule_problem(&rule("userId", Action::Hash)).is_none());
        assert!(rule_problem(&rule("context.traits.email", Action::Hash)).is_none());
        assert!(rule_problem(&rule("properties.*.items.*", Action::Drop)).is_none());
        let hash = [rule("properties.email", Action::Hash)];
        assert!(salt_problem(&hash, None).is_some(), "hashing needs a salt");
        assert!(salt_problem(&hash, Some("short")).is_some());
        assert!(salt_problem(&hash, Some("a-salt-of-16-chars")).is_none());
        assert!(salt_problem(&[rule("context.ip", Action::Drop)], None).is_none());
        let many: Vec<RuleDoc> = (0..=MAX_RULES)
            .map(|i| rule(&format!("properties.p{i}"), Action::Drop))
            .collect();
        assert!(rules_problem(&many).is_some());
        assert!(
            Rules::compile(&[], Some("x")).is_none(),
            "no rules, no work"
        );
        let debug = format!("{:?}", rules(&[("userId", Action::Hash)]));
        assert!(!debug.contains("a-salt"), "{debug}");
    }
}
