//! What a tracking-plan change does, rule by rule and field by field, and how a proposal
//! is carried onto a newer published version: a three-way merge by rule that refuses,
//! never guesses, when both sides changed the same rule.
//!
//! A rule is named by its type, key and version. Its *fields* are the properties its
//! schema describes where Segment's editor shows them: an event's `properties` (TRACK,
//! PAGE, SCREEN), a profile's `traits` (IDENTIFY, GROUP), the whole message (COMMON).
//! Nested objects are walked (`properties.cart.total`), array items are named
//! `<field>.$` as Segment's schema view names them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::protocols::RuleDoc;

/// How a rule or a field changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Not there before.
    Added,
    /// Not there after.
    Removed,
    /// There on both sides, different.
    Changed,
}

impl Change {
    fn sign(self) -> char {
        match self {
            Self::Added => '+',
            Self::Removed => '-',
            Self::Changed => '~',
        }
    }
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// Dotted path: `properties.total`, `traits.address.city`, `properties.items.$.sku`.
    pub path: String,
    /// Added, removed or changed.
    pub change: Change,
    /// Its type before (`string`, `integer|null`, `date-time`, `string enum`, `any`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Its type after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// One rule's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleChange {
    /// `TRACK`, `IDENTIFY`, `GROUP`, `PAGE`, `SCREEN` or `COMMON`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event (or page/screen) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Event version.
    pub version: u32,
    /// Added, removed or changed.
    pub change: Change,
    /// Fields added, removed or changed (every field of an added or removed rule).
    pub fields: Vec<FieldChange>,
    /// Fields that became required.
    pub required_added: Vec<String>,
    /// Fields that stopped being required.
    pub required_removed: Vec<String>,
    /// Whether the schema changed outside its fields (e.g. `additionalProperties`).
    pub other_changes: bool,
}

/// A plan change, rule by rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanDiff {
    /// The rules that changed, in type, key and version order.
    pub rules: Vec<RuleChange>,
    /// How many rules were added.
    pub added: usize,
    /// How many were removed.
    pub removed: usize,
    /// How many were changed.
    pub changed: usize,
}

impl PlanDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The diff as text, one line per rule and per field change:
    ///
    /// ```text
    /// ~ TRACK "Order Completed" v1
    ///     ~ properties.total: integer -> number
    ///     + required properties.coupon
    /// ```
    pub fn text(&self) -> String {
        let mut out = String::new();
        for rule in &self.rules {
            let id = RuleId {
                kind: rule.kind.clone(),
                key: rule.key.clone(),
                version: rule.version,
            };
            let _ = writeln!(out, "{} {}", rule.change.sign(), id.name());
            for f in &rule.fields {
                let types = match (f.change, &f.before, &f.after) {
                    (Change::Changed, Some(b), Some(a)) if b == a => {
                        format!("{a} (constraints changed)")
                    }
                    (Change::Changed, Some(b), Some(a)) => format!("{b} -> {a}"),
                    (_, _, Some(t)) | (_, Some(t), None) => t.clone(),
                    (_, None, None) => String::new(),
                };
                let _ = writeln!(out, "    {} {}: {types}", f.change.sign(), f.path);
            }
            for path in &rule.required_added {
                let _ = writeln!(out, "    + required {path}");
            }
            for path in &rule.required_removed {
                let _ = writeln!(out, "    - required {path}");
            }
            if rule.other_changes {
                let _ = writeln!(out, "    ~ other schema keywords changed");
            }
        }
        let _ = write!(
            out,
            "{} rule(s): {} added, {} removed, {} changed",
            self.rules.len(),
            self.added,
            self.removed,
            self.changed
        );
        out
    }
}

/// A rule's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RuleId {
    kind: String,
    key: Option<String>,
    version: u32,
}

impl RuleId {
    fn of(rule: &RuleDoc) -> Self {
        Self {
            kind: rule.kind.clone(),
            key: rule.key.clone(),
            version: rule.version,
        }
    }

    /// `TRACK "Order Completed" v1`, `IDENTIFY v1`.
    fn name(&self) -> String {
        match &self.key {
            Some(key) => format!("{} {key:?} v{}", self.kind, self.version),
            None => format!("{} v{}", self.kind, self.version),
        }
    }
}

fn index(rules: &[RuleDoc]) -> BTreeMap<RuleId, &RuleDoc> {
    rules.iter().map(|r| (RuleId::of(r), r)).collect()
}

/// The rules `after` adds, removes and changes against `before`.
pub fn diff(before: &[RuleDoc], after: &[RuleDoc]) -> PlanDiff {
    let (old, new) = (index(before), index(after));
    let ids: BTreeSet<&RuleId> = old.keys().chain(new.keys()).collect();
    let mut out = PlanDiff {
        rules: Vec::new(),
        added: 0,
        removed: 0,
        changed: 0,
    };
    for id in ids {
        let (b, a) = (old.get(id), new.get(id));
        let change = match (b, a) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(b), Some(a)) if b.json_schema != a.json_schema => Change::Changed,
            _ => continue,
        };
        match change {
            Change::Added => out.added += 1,
            Change::Removed => out.removed += 1,
            Change::Changed => out.changed += 1,
        }
        let null = Value::Null;
        let (before, after) = (
            b.map_or(&null, |r| &r.json_schema),
            a.map_or(&null, |r| &r.json_schema),
        );
        out.rules.push(rule_change(id, change, before, after));
    }
    out
}

fn rule_change(id: &RuleId, change: Change, before: &Value, after: &Value) -> RuleChange {
    let (b, a) = (Fields::of(&id.kind, before), Fields::of(&id.kind, after));
    let mut fields = Vec::new();
    for path in b.own.keys().chain(a.own.keys()).collect::<BTreeSet<_>>() {
        let (was, is) = (b.own.get(path), a.own.get(path));
        let change = match (was, is) {
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (Some(was), Some(is)) if was != is => Change::Changed,
            _ => continue,
        };
        fields.push(FieldChange {
            path: path.clone(),
            change,
            before: was.map(type_of),
            after: is.map(type_of),
        });
    }
    RuleChange {
        kind: id.kind.clone(),
        key: id.key.clone(),
        version: id.version,
        change,
        fields,
        required_added: a.required.difference(&b.required).cloned().collect(),
        required_removed: b.required.difference(&a.required).cloned().collect(),
        other_changes: change == Change::Changed && b.rest != a.rest,
    }
}

/// A rule schema taken apart: each field's own constraints, the required fields, and
/// the schema with its fields taken out.
struct Fields {
    own: BTreeMap<String, Value>,
    required: BTreeSet<String>,
    rest: Value,
}

impl Fields {
    fn of(kind: &str, schema: &Value) -> Self {
        let (pointer, prefix) = match kind {
            "IDENTIFY" | "GROUP" => ("/properties/traits", "traits"),
            "COMMON" => ("", ""),
            _ => ("/properties/properties", "properties"),
        };
        let mut out = Self {
            own: BTreeMap::new(),
            required: BTreeSet::new(),
            rest: schema.clone(),
        };
        if let Some(node) = schema.pointer(pointer) {
            out.walk(node, prefix, 0);
        }
        if let Some(Value::Object(node)) = out.rest.pointer_mut(pointer) {
            node.remove("properties");
            node.remove("required");
        }
        out
    }

    /// Nesting deeper than this is compared as one field.
    const DEPTH: usize = 16;

    fn walk(&mut self, node: &Value, prefix: &str, depth: usize) {
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if let Some(Value::Array(names)) = node.get("required") {
            self.required
                .extend(names.iter().filter_map(Value::as_str).map(join));
        }
        let Some(Value::Object(props)) = node.get("properties") else {
            return;
        };
        for (name, sub) in props {
            let path = join(name);
            let mut own = sub.clone();
            if depth < Self::DEPTH {
                if let Value::Object(o) = &mut own {
                    o.remove("properties");
                    o.remove("required");
                    if let Some(Value::Object(items)) = o.get_mut("items") {
                        items.remove("properties");
                        items.remove("required");
                    }
                }
                self.walk(sub, &path, depth + 1);
                if let Some(items) = sub.get("items") {
                    self.walk(items, &format!("{path}.$"), depth + 1);
                }
            }
            self.own.insert(path, own);
        }
    }
}

/// A field's type as the editor shows it: `string`, `integer|null`, `date-time`,
/// `string enum`, `any`.
fn type_of(schema: &Value) -> String {
    let mut out = match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("|"),
        _ => "any".to_owned(),
    };
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        out = out.replacen("string", "date-time", 1);
    }
    if schema.get("enum").is_some() {
        out.push_str(" enum");
    }
    out
}

/// Carries `proposed` (made from `base`) onto `published` (what was published since):
/// a rule changed on one side only takes that side; changed alike on both, either.
/// Rules changed differently on both sides are conflicts: their names come back and
/// nothing is merged. The result keeps `published`'s order, the proposal's new rules
/// after it.
pub fn rebase(
    base: &[RuleDoc],
    published: &[RuleDoc],
    proposed: &[RuleDoc],
) -> Result<Vec<RuleDoc>, Vec<String>> {
    let (b, t, o) = (index(base), index(published), index(proposed));
    let mut conflicts = Vec::new();
    let mut pick = |id: &RuleId| -> Option<RuleDoc> {
        let (b, t, o) = (b.get(id), t.get(id), o.get(id));
        if o == b || o == t {
            t.map(|r| (*r).clone())
        } else if t == b {
            o.map(|r| (*r).clone())
        } else {
            conflicts.push(id.name());
            None
        }
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let ids = published.iter().chain(proposed).chain(base).map(RuleId::of);
    for id in ids {
        if seen.insert(id.clone())
            && let Some(rule) = pick(&id)
        {
            out.push(rule);
        }
    }
    if conflicts.is_empty() {
        Ok(out)
    } else {
        Err(conflicts)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn track(key: &str, props: Value, required: &[&str]) -> RuleDoc {
        RuleDoc {
            kind: "TRACK".into(),
            key: Some(key.into()),
            version: 1,
            json_schema: json!({"properties": {"properties": {
                "type": "object", "properties": props, "required": required,
            }}}),
        }
    }

    fn identify(traits: Value) -> RuleDoc {
        RuleDoc {
            kind: "IDENTIFY".into(),
            key: None,
            version: 1,
            json_schema: json!({"properties": {"traits": {"properties": traits}}}),
        }
    }

    #[test]
    fn fields_added_removed_retyped_and_required() {
        let before = [track(
            "Order Completed",
            json!({"total": {"type": "integer"}, "legacy": {"type": "number"}, "sku": {"type": "string"}}),
            &["legacy"],
        )];
        let after = [track(
            "Order Completed",
            json!({"total": {"type": "number"}, "coupon": {"type": ["string", "null"]},
                   "sku": {"type": "string", "pattern": "^[A-Z]+$"}}),
            &["coupon"],
        )];
        let d = diff(&before, &after);
        assert_eq!((d.added, d.removed, d.changed), (0, 0, 1));
        let r = &d.rules[0];
        assert_eq!(r.change, Change::Changed);
        let by = |p: &str| r.fields.iter().find(|f| f.path == p).cloned();
        assert_eq!(
            by("properties.total").map(|f| (f.change, f.before, f.after)),
            Some((
                Change::Changed,
                Some("integer".into()),
                Some("number".into())
            ))
        );
        assert_eq!(
            by("properties.coupon").map(|f| (f.change, f.after)),
            Some((Change::Added, Some("string|null".into())))
        );
        assert_eq!(
            by("properties.legacy").map(|f| f.change),
            Some(Change::Removed)
        );
        assert_eq!(
            by("properties.sku").map(|f| f.change),
            Some(Change::Changed)
        );
        assert_eq!(r.required_added, ["properties.coupon"]);
        assert_eq!(r.required_removed, ["properties.legacy"]);
        assert!(!r.other_changes);
        let text = d.text();
        assert!(text.contains("~ TRACK \"Order Completed\" v1"), "{text}");
        assert!(
            text.contains("~ properties.total: integer -> number"),
            "{text}"
        );
        assert!(
            text.contains("~ properties.sku: string (constraints changed)"),
            "{text}"
        );
        assert!(text.contains("+ required properties.coupon"), "{text}");
        assert!(text.ends_with("1 rule(s): 0 added, 0 removed, 1 changed"));
    }

    #[test]
    fn nested_fields_items_and_rules_added_or_removed() {
        let before = [identify(json!({"email": {"type": "string"}}))];
        let after = [
            identify(json!({
                "email": {"type": "string", "format": "date-time"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"id": {"enum": [1, 2]}}}},
            })),
            track("Signed Up", json!({"plan": {"type": "string"}}), &[]),
        ];
        let d = diff(&before, &after);
        assert_eq!((d.added, d.removed, d.changed), (1, 0, 1));
        let identify = d
            .rules
            .iter()
            .find(|r| r.kind == "IDENTIFY")
            .expect("identify");
        let paths: Vec<&str> = identify.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "traits.address",
                "traits.address.city",
                "traits.email",
                "traits.tags",
                "traits.tags.$.id"
            ]
        );
        assert_eq!(identify.required_added, ["traits.address.city"]);
        let email = &identify.fields[2];
        assert_eq!(email.after.as_deref(), Some("date-time"));
        assert_eq!(identify.fields[4].after.as_deref(), Some("any enum"));
        let signed_up = d.rules.iter().find(|r| r.kind == "TRACK").expect("track");
        assert_eq!(signed_up.change, Change::Added);
        assert_eq!(signed_up.fields[0].path, "properties.plan");
        // Removing it reads the other way round.
        let back = diff(&after, &before);
        assert_eq!((back.added, back.removed, back.changed), (0, 1, 1));
    }

    #[test]
    fn other_keywords_and_no_change() {
        let mut a = track("A", json!({"x": {"type": "string"}}), &[]);
        assert!(diff(&[a.clone()], &[a.clone()]).is_empty());
        a.json_schema["properties"]["properties"]["additionalProperties"] = json!(false);
        let d = diff(&[track("A", json!({"x": {"type": "string"}}), &[])], &[a]);
        assert!(d.rules[0].other_changes);
        assert!(d.rules[0].fields.is_empty());
        assert!(d.text().contains("other schema keywords changed"));
    }

    #[test]
    fn rebase_takes_each_side_and_refuses_conflicts() {
        let a1 = track("A", json!({"x": {"type": "string"}}), &[]);
        let a2 = track("A", json!({"x": {"type": "number"}}), &[]);
        let a3 = track("A", json!({"x": {"type": "boolean"}}), &[]);
        let b1 = track("B", json!({}), &[]);
        let b2 = track("B", json!({"y": {"type": "string"}}), &[]);
        let c = track("C", json!({}), &[]);
        let d = track("D", json!({}), &[]);
        // Published changed A and added C; the proposal changed B and added D.
        let base = [a1.clone(), b1.clone()];
        let merged = rebase(
            &base,
            &[a2.clone(), b1.clone(), c.clone()],
            &[a1.clone(), b2.clone(), d.clone()],
        );
        assert_eq!(
            merged,
            Ok(vec![a2.clone(), b2.clone(), c.clone(), d.clone()])
        );
        // Published removed B, which the proposal left alone: it stays removed.
        let merged = rebase(&base, std::slice::from_ref(&a1), &[a2.clone(), b1.clone()]);
        assert_eq!(merged, Ok(vec![a2.clone()]));
        // The same change on both sides is no conflict.
        assert_eq!(
            rebase(&base, &[a2.clone(), b1.clone()], &[a2.clone(), b1.clone()]),
            Ok(vec![a2.clone(), b1.clone()])
        );
        // Different changes to A: refused, named.
        assert_eq!(
            rebase(&base, &[a2.clone(), b1.clone()], &[a3, b1.clone()]),
            Err(vec!["TRACK \"A\" v1".to_owned()])
        );
        // Removed on one side, changed on the other: refused too.
        assert_eq!(
            rebase(&base, std::slice::from_ref(&b1), &[a2, b1.clone()]),
            Err(vec!["TRACK \"A\" v1".to_owned()])
        );
    }
}
