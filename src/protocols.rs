//! Tracking plans: rules compiled once per catalog version, validation of each event
//! at the edge, and the enforcement decision (allow / omit / block) per source.
//!
//! Order, as Segment's: the event's own rule first (unplanned event, unplanned
//! properties or traits, JSON Schema violations), then the plan's COMMON rule on what
//! survived. Violations follow the wording of Segment's validator (`Required`,
//! `Invalid Type`, `Unplanned Event`, …) with dotted field paths. Anything omitted or
//! violated is recorded in the event's `context.protocols`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use simd_json::StaticNode;
use simd_json::borrowed::{Object, Value};
use simd_json::prelude::*;

use crate::event::Kind;

mod decision;
mod document;

pub use decision::{Decision, decide};
pub use document::{CallControlsDoc, ControlsDoc, Enforcement, PlanDoc, RuleDoc};

/// What to do with one kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep the event (and the data), record the violation.
    Allow,
    /// Remove the offending properties/traits, record them.
    Omit,
    /// Do not store the event for delivery.
    Block,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Self::Allow,
            "omit" => Self::Omit,
            "block" => Self::Block,
            _ => return None,
        })
    }
}

/// What a source does with each kind of finding, for one call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallControls {
    /// Events without a rule (`Allow` or `Block`; only track events can be unplanned).
    pub unplanned_events: Action,
    /// Properties/traits the rule does not list (`Allow` or `Omit`).
    pub unplanned_properties: Action,
    /// Schema violations of the event's rule.
    pub violations: Action,
    /// Violations of the COMMON rule.
    pub common_violations: Action,
}

/// The resolved controls of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    /// Per call type, in `Kind` order: identify, track, page, screen, group, alias.
    calls: [CallControls; 6],
    /// Source to forward blocked events to.
    pub forward_blocked_to: Option<String>,
    /// Source to send `Violation Generated` events to.
    pub forward_violations_to: Option<String>,
}

const KINDS: [Kind; 6] = [
    Kind::Identify,
    Kind::Track,
    Kind::Page,
    Kind::Screen,
    Kind::Group,
    Kind::Alias,
];

impl Controls {
    /// `enforcement` sets the defaults (warn: allow all; block: block unplanned events
    /// and violations, keep unplanned properties); the source-wide values in `doc`
    /// override them, and the per-call-type tables override those.
    pub fn resolve(enforcement: Enforcement, doc: &ControlsDoc) -> Result<Self, String> {
        let base = match enforcement {
            Enforcement::Off | Enforcement::Warn => Action::Allow,
            Enforcement::Block => Action::Block,
        };
        use Action::{Allow, Block, Omit};
        let pick = |own: Option<&String>,
                    shared: &Option<String>,
                    default: Action,
                    allowed: &[Action],
                    name: &str| {
            match own.or(shared.as_ref()).map(String::as_str) {
                None => Ok(default),
                Some(v) => Action::parse(v)
                    .filter(|a| allowed.contains(a))
                    .ok_or_else(|| format!("protocols.{name} cannot be {v:?}")),
            }
        };
        let mut calls = [CallControls {
            unplanned_events: base,
            unplanned_properties: Allow,
            violations: base,
            common_violations: base,
        }; 6];
        for (slot, kind) in calls.iter_mut().zip(KINDS) {
            let own = match kind {
                Kind::Track => doc.track.as_ref(),
                Kind::Identify => doc.identify.as_ref(),
                Kind::Group => doc.group.as_ref(),
                Kind::Page => doc.page.as_ref(),
                Kind::Screen => doc.screen.as_ref(),
                Kind::Alias => None,
            };
            *slot = CallControls {
                unplanned_events: pick(
                    own.and_then(|o| o.unplanned_events.as_ref()),
                    &doc.all.unplanned_events,
                    base,
                    &[Allow, Block],
                    "unplanned_events",
                )?,
                unplanned_properties: pick(
                    own.and_then(|o| o.unplanned_properties.as_ref()),
                    &doc.all.unplanned_properties,
                    Allow,
                    &[Allow, Omit],
                    "unplanned_properties",
                )?,
                violations: pick(
                    own.and_then(|o| o.violations.as_ref()),
                    &doc.all.violations,
                    base,
                    &[Allow, Omit, Block],
                    "violations",
                )?,
                common_violations: pick(
                    own.and_then(|o| o.common_violations.as_ref()),
                    &doc.all.common_violations,
                    base,
                    &[Allow, Omit, Block],
                    "common_violations",
                )?,
            };
        }
        Ok(Self {
            calls,
            forward_blocked_to: doc.forward_blocked_to.clone(),
            forward_violations_to: doc.forward_violations_to.clone(),
        })
    }

    /// The controls of one call type.
    pub fn for_kind(&self, kind: Kind) -> &CallControls {
        let index = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        &self.calls[index]
    }
}

/// Why a plan could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A rule's `type` is not one of the six.
    #[error("rule type {0:?} is not TRACK, IDENTIFY, GROUP, PAGE, SCREEN or COMMON")]
    RuleType(String),
    /// A TRACK rule without an event name.
    #[error("TRACK rules need a key (the event name)")]
    MissingKey,
    /// The JSON Schema does not compile.
    #[error("rule {key:?} v{version}: invalid JSON Schema: {reason}")]
    Schema {
        /// Rule key.
        key: String,
        /// Rule version.
        version: u32,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RuleKind {
    Call(Kind),
    Common,
}

/// A compiled rule.
pub struct Rule {
    key: String,
    version: u32,
    validator: jsonschema::Validator,
    /// The top-level message keys the schema can look at, when its root uses only
    /// `properties`/`required` (and annotations): validation then sees just those keys,
    /// so the rest of the message (context, user agent…) is never converted.
    /// `None`: the whole message.
    scope: Option<Vec<String>>,
    /// Keys under `properties` (track/page/screen) or `traits` (identify/group) that
    /// the schema lists; `None` when it lists none (nothing is unplanned then).
    planned: Option<BTreeSet<String>>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("key", &self.key)
            .field("version", &self.version)
            .finish()
    }
}

/// A compiled tracking plan.
#[derive(Debug)]
pub struct Plan {
    /// Plan id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Plan version.
    pub version: u32,
    /// Rules by call kind (see [`slot`]), then key; each list sorted by version ascending.
    rules: [HashMap<String, Vec<Rule>>; 7],
    /// Planned track event names (for bounded metric labels).
    events: BTreeSet<String>,
}

impl Plan {
    /// Compiles every rule.
    pub fn compile(doc: &PlanDoc) -> Result<Self, PlanError> {
        let mut rules: [HashMap<String, Vec<Rule>>; 7] = Default::default();
        let mut events = BTreeSet::new();
        for r in &doc.rules {
            let kind = rule_kind(r)?;
            let key = r.key.clone().unwrap_or_default();
            if kind == RuleKind::Call(Kind::Track) {
                if key.is_empty() {
                    return Err(PlanError::MissingKey);
                }
                events.insert(key.clone());
            }
            // `pattern` and `patternProperties` use the `regex` engine: linear-time
            // matching, so one event's validation cost is bounded whatever the plan says.
            // A pattern it cannot compile (backreferences, lookaround) refuses the plan.
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft7)
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(&r.json_schema)
                .map_err(|e| PlanError::Schema {
                    key: key.clone(),
                    version: r.version,
                    reason: e.to_string(),
                })?;
            let field = match kind {
                RuleKind::Call(Kind::Identify | Kind::Group) => "traits",
                _ => "properties",
            };
            let planned = r
                .json_schema
                .pointer(&format!("/properties/{field}/properties"))
                .and_then(serde_json::Value::as_object)
                .map(|o| o.keys().cloned().collect());
            rules[slot(kind)]
                .entry(key.clone())
                .or_default()
                .push(Rule {
                    key,
                    version: r.version,
                    validator,
                    scope: scope(&r.json_schema),
                    planned,
                });
        }
        for list in rules.iter_mut().flat_map(HashMap::values_mut) {
            list.sort_by_key(|r| r.version);
        }
        Ok(Self {
            id: doc.id.clone(),
            name: doc.name.clone().unwrap_or_else(|| doc.id.clone()),
            version: doc.version,
            rules,
            events,
        })
    }

    /// The rule for an event: `version` if the plan has it, else the oldest.
    fn rule(&self, kind: RuleKind, key: &str, version: Option<u64>) -> Option<&Rule> {
        let list = self.rules[slot(kind)].get(key)?;
        version
            .and_then(|v| list.iter().find(|r| u64::from(r.version) == v))
            .or_else(|| list.first())
    }

    /// A bounded label for an event name: planned names as they are, others `unplanned`.
    pub fn event_label(&self, kind: Kind, name: &str) -> &str {
        match kind {
            Kind::Track => self.events.get(name).map_or("unplanned", String::as_str),
            other => other.as_str(),
        }
    }
}

/// Root keywords that only constrain the keys they name.
const SCOPED_KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "$schema",
    "$id",
    "title",
    "description",
    "labels",
    "definitions",
    "$comment",
];

fn scope(schema: &serde_json::Value) -> Option<Vec<String>> {
    let root = schema.as_object()?;
    if root.keys().any(|k| !SCOPED_KEYWORDS.contains(&k.as_str())) {
        return None;
    }
    let mut keys: Vec<String> = root
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for r in root
        .get("required")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = r.as_str().filter(|k| !keys.iter().any(|have| have == k)) {
            keys.push(k.to_owned());
        }
    }
    Some(keys)
}

/// Index of a rule kind in `Plan::rules`.
fn slot(kind: RuleKind) -> usize {
    match kind {
        RuleKind::Call(Kind::Identify) => 0,
        RuleKind::Call(Kind::Track) => 1,
        RuleKind::Call(Kind::Page) => 2,
        RuleKind::Call(Kind::Screen) => 3,
        RuleKind::Call(Kind::Group) => 4,
        RuleKind::Call(Kind::Alias) => 5,
        RuleKind::Common => 6,
    }
}

fn rule_kind(r: &RuleDoc) -> Result<RuleKind, PlanError> {
    Ok(match r.kind.as_str() {
        "TRACK" => RuleKind::Call(Kind::Track),
        "IDENTIFY" => RuleKind::Call(Kind::Identify),
        "GROUP" => RuleKind::Call(Kind::Group),
        "PAGE" => RuleKind::Call(Kind::Page),
        "SCREEN" => RuleKind::Call(Kind::Screen),
        "COMMON" => RuleKind::Common,
        other => return Err(PlanError::RuleType(other.to_owned())),
    })
}

/// A source's plan and controls.
#[derive(Debug)]
pub struct SourceProtocols {
    /// The compiled plan.
    pub plan: Arc<Plan>,
    /// `warn` or `block` (sources with `off` have none).
    pub enforcement: Enforcement,
    /// Resolved controls.
    pub controls: Controls,
}

/// One violation, as recorded in `context.protocols.violations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `Required`, `Invalid Type`, `Unplanned Event`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Dotted path (`properties.price`), or `(root)`.
    pub field: String,
    /// Human description.
    pub description: String,
}

/// The decision for one event.
#[derive(Debug, Default)]
pub struct Review {
    /// Why the event is blocked (a bounded reason), if it is.
    pub blocked: Option<&'static str>,
    /// Everything found.
    pub violations: Vec<Violation>,
    /// Keys removed as unplanned.
    pub omitted: Vec<String>,
    /// Keys removed for violating the schema.
    pub omitted_on_violation: Vec<String>,
}

/// Reviews (and, for omit, edits) one normalised message.
pub fn review(sp: &SourceProtocols, source_id: &str, kind: Kind, msg: &mut Object<'_>) -> Review {
    let mut out = Review::default();
    let c = sp.controls.for_kind(kind);
    let field = match kind {
        Kind::Identify | Kind::Group => "traits",
        _ => "properties",
    };
    let key = match kind {
        Kind::Track => msg
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        Kind::Page | Kind::Screen => msg
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    let version = msg
        .get("context")
        .and_then(|c| c.get("protocols"))
        .and_then(|p| p.get("event_version"))
        .and_then(|v| v.as_u64());

    // 1. The event's own rule.
    match sp.plan.rule(RuleKind::Call(kind), &key, version) {
        None if kind == Kind::Track => {
            out.violations.push(Violation {
                kind: "Unplanned Event",
                field: "event".to_owned(),
                description: format!("Event {key:?} is not in the tracking plan"),
            });
            if c.unplanned_events == Action::Block {
                out.blocked = Some("unplanned_event");
            }
        }
        None => {}
        Some(rule) => {
            if let Some(planned) = &rule.planned {
                let unplanned: Vec<String> = object_keys(msg, field)
                    .into_iter()
                    .filter(|k| !planned.contains(k))
                    .collect();
                for k in &unplanned {
                    out.violations.push(Violation {
                        kind: if field == "traits" {
                            "Unplanned Trait"
                        } else {
                            "Unplanned Property"
                        },
                        field: format!("{field}.{k}"),
                        description: format!("{field}.{k} is not in the tracking plan"),
                    });
                }
                if c.unplanned_properties == Action::Omit {
                    remove_keys(msg, field, &unplanned);
                    out.omitted.extend(unplanned);
                }
            }
            let found = validate(rule, msg, field);
            apply(&mut out, msg, field, found, c.violations, "violation");
        }
    }

    // 2. The COMMON rule, on what survived.
    if out.blocked.is_none()
        && let Some(common) = sp.plan.rule(RuleKind::Common, "", version)
    {
        let found = validate(common, msg, field);
        apply(
            &mut out,
            msg,
            field,
            found,
            c.common_violations,
            "common_violation",
        );
    }

    if !out.violations.is_empty() || !out.omitted.is_empty() {
        annotate(msg, &sp.plan, source_id, &out);
    }
    out
}

/// Found violations, and the top-level property/trait keys they concern.
struct Found {
    violations: Vec<Violation>,
    keys: Vec<String>,
}

fn apply(
    out: &mut Review,
    msg: &mut Object<'_>,
    field: &str,
    found: Found,
    action: Action,
    reason: &'static str,
) {
    if found.violations.is_empty() {
        return;
    }
    out.violations.extend(found.violations);
    match action {
        Action::Allow => {}
        Action::Block => out.blocked = Some(reason),
        Action::Omit => {
            remove_keys(msg, field, &found.keys);
            out.omitted_on_violation.extend(found.keys);
        }
    }
}

fn validate(rule: &Rule, msg: &Object<'_>, field: &str) -> Found {
    let instance = match &rule.scope {
        Some(keys) => serde_json::Value::Object(
            keys.iter()
                .filter_map(|k| msg.get(k.as_str()).map(|v| (k.clone(), to_serde(v))))
                .collect(),
        ),
        None => to_serde_object(msg),
    };
    let mut found = Found {
        violations: Vec::new(),
        keys: Vec::new(),
    };
    // The fast check first; the detailed walk only for events that fail it.
    if rule.validator.is_valid(&instance) {
        return found;
    }
    for error in rule.validator.iter_errors(&instance) {
        let pointer = error.instance_path().as_str().to_owned();
        let mut path: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (kind, description) = describe(&error, &mut path);
        let dotted = if path.is_empty() {
            "(root)".to_owned()
        } else {
            path.join(".")
        };
        if path.len() >= 2 && path[0] == field && !found.keys.contains(&path[1]) {
            found.keys.push(path[1].clone());
        }
        found.violations.push(Violation {
            kind,
            description: description.unwrap_or_else(|| format!("{dotted}: {error}")),
            field: dotted,
        });
    }
    found
}

/// gojsonschema-style type names (what Segment shows), and for `Required` the path of
/// the missing property itself.
fn describe(
    error: &jsonschema::ValidationError<'_>,
    path: &mut Vec<String>,
) -> (&'static str, Option<String>) {
    use jsonschema::error::ValidationErrorKind as K;
    match error.kind() {
        K::Required { property } => {
            path.push(property.as_str().unwrap_or_default().to_owned());
            let dotted = path.join(".");
            ("Required", Some(format!("{dotted} is required")))
        }
        K::Type { kind } => {
            let given = error.instance().as_ref();
            let given = match given {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "boolean",
                serde_json::Value::Number(n) if n.is_f64() => "number",
                serde_json::Value::Number(_) => "integer",
                serde_json::Value::String(_) => "string",
                serde_json::Value::Array(_) => "array",
                serde_json::Value::Object(_) => "object",
            };
            let expected = format!("{kind:?}")
                .to_lowercase()
                .replace("single(", "")
                .replace("multiple(", "")
                .replace(')', "");
            (
                "Invalid Type",
                Some(format!(
                    "Invalid type. Expected: {expected}, given: {given}"
                )),
            )
        }
        K::Enum { .. } => ("Enum", None),
        K::Pattern { .. } => ("Does Not Match Pattern", None),
        K::Format { .. } => ("Does Not Match Format", None),
        K::Minimum { .. } | K::ExclusiveMinimum { .. } => ("Number Too Small", None),
        K::Maximum { .. } | K::ExclusiveMaximum { .. } => ("Number Too Large", None),
        K::MinLength { .. } => ("String Too Short", None),
        K::MaxLength { .. } => ("String Too Long", None),
        K::AdditionalProperties { .. } => ("Additional Property Not Allowed", None),
        _ => ("Schema Violation", None),
    }
}

/// Writes `context.protocols`.
fn annotate(msg: &mut Object<'_>, plan: &Plan, source_id: &str, review: &Review) {
    let violations = serde_json::to_value(&review.violations).unwrap_or_default();
    let protocols = serde_json::json!({
        "sourceId": source_id,
        "trackingPlanId": plan.id,
        "trackingPlanVersion": plan.version,
        "violations": violations,
        "omitted": review.omitted,
        "omitted_on_violation": review.omitted_on_violation,
    });
    let protocols = from_serde(&protocols);
    if !matches!(msg.get("context"), Some(Value::Object(_))) {
        msg.insert(Cow::Borrowed("context"), Value::Object(Box::default()));
    }
    if let Some(Value::Object(context)) = msg.get_mut("context") {
        // Keep a client-sent `event_version` next to what Sluice adds.
        if let (Some(Value::Object(existing)), Value::Object(mut added)) =
            (context.remove("protocols"), protocols.clone())
        {
            for (k, v) in existing.into_iter() {
                added.entry(k).or_insert(v);
            }
            context.insert(Cow::Borrowed("protocols"), Value::Object(added));
        } else {
            context.insert(Cow::Borrowed("protocols"), protocols);
        }
    }
}

/// The source an event came from, as the violation event names it.
#[derive(Debug, Clone, Copy)]
pub struct SourceName<'a> {
    /// Its id (also its slug).
    pub id: &'a str,
    /// Its display name.
    pub name: &'a str,
}

/// The `Violation Generated` track event Segment forwards for one violation.
pub fn violation_event(
    plan: &Plan,
    source: SourceName<'_>,
    prepared: &crate::event::Prepared<'_>,
    v: &Violation,
) -> Vec<u8> {
    let msg = &prepared.message;
    let text = |key: &str| {
        msg.get(key)
            .map(to_serde)
            .unwrap_or(serde_json::Value::Null)
    };
    let context = msg.get("context");
    let pick = |key: &str| {
        context
            .and_then(|c| c.get(key))
            .map(to_serde)
            .unwrap_or(serde_json::Value::Null)
    };
    let event = serde_json::json!({
        "type": "track",
        "event": "Violation Generated",
        "userId": "schema-violations",
        "messageId": format!("sch-{}", uuid::Uuid::new_v4()),
        "forwardedFromProject": source.id,
        "receivedAt": text("receivedAt"),
        "timestamp": text("receivedAt"),
        "context": { "app": pick("app"), "library": pick("library") },
        "properties": {
            "appVersion": context.and_then(|c| c.get("app")).and_then(|a| a.get("version")).map(to_serde).unwrap_or(serde_json::Value::Null),
            "eventMessageID": prepared.message_id,
            "eventName": text(if prepared.kind == Kind::Track { "event" } else { "name" }),
            "eventSentAt": text("sentAt"),
            "eventTimestamp": text("timestamp"),
            "eventType": prepared.kind.as_str(),
            "sourceID": source.id,
            "sourceName": source.name,
            "sourceSlug": source.id,
            "trackingPlanID": plan.id,
            "trackingPlanName": plan.name,
            "violationDescription": v.description,
            "violationField": v.field,
            "violationType": v.kind,
        },
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

fn object_keys(msg: &Object<'_>, field: &str) -> Vec<String> {
    match msg.get(field) {
        Some(Value::Object(o)) => o.keys().map(|k| k.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn remove_keys(msg: &mut Object<'_>, field: &str, keys: &[String]) {
    if let Some(Value::Object(o)) = msg.get_mut(field) {
        for k in keys {
            while o.remove(k.as_str()).is_some() {}
        }
    }
}

fn to_serde_object(msg: &Object<'_>) -> serde_json::Value {
    serde_json::Value::Object(
        msg.iter()
            .map(|(k, v)| (k.to_string(), to_serde(v)))
            .collect(),
    )
}

/// The borrowed DOM as a serde_json value (what the validator takes).
fn to_serde(v: &Value<'_>) -> serde_json::Value {
    match v {
        Value::Static(StaticNode::Null) => serde_json::Value::Null,
        Value::Static(StaticNode::Bool(b)) => (*b).into(),
        Value::Static(StaticNode::I64(n)) => (*n).into(),
        Value::Static(StaticNode::U64(n)) => (*n).into(),
        Value::Static(StaticNode::F64(f)) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_serde).collect()),
        Value::Object(o) => to_serde_object(o),
    }
}

fn from_serde(v: &serde_json::Value) -> Value<'static> {
    match v {
        serde_json::Value::Null => Value::Static(StaticNode::Null),
        serde_json::Value::Bool(b) => Value::Static(StaticNode::Bool(*b)),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(|u| Value::Static(StaticNode::U64(u)))
            .or_else(|| n.as_i64().map(|i| Value::Static(StaticNode::I64(i))))
            .unwrap_or_else(|| Value::Static(StaticNode::F64(n.as_f64().unwrap_or_default()))),
        serde_json::Value::String(s) => Value::String(Cow::Owned(s.clone())),
        serde_json::Value::Array(a) => Value::Array(Box::new(a.iter().map(from_serde).collect())),
        serde_json::Value::Object(o) => {
            let mut out = Object::with_capacity_and_hasher(o.len(), Default::default());
            for (k, v) in o {
                out.insert(Cow::Owned(k.clone()), from_serde(v));
            }
            Value::Object(Box::new(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Document;

    const PLAN: &str = r#"
        [[tracking_plans]]
        id = "tp"
        [[tracking_plans.rules]]
        type = "TRACK"
        key = "Order Completed"
        jsonSchema = { type = "object", properties = { properties = { type = "object", required = ["total"], properties = { total = { type = "number" }, currency = { type = "string", enum = ["EUR", "USD"] } } } } }
        [[tracking_plans.rules]]
        type = "TRACK"
        key = "Order Completed"
        version = 2
        jsonSchema = { type = "object", properties = { properties = { type = "object", required = ["total", "order_id"], properties = { total = { type = "number" }, order_id = { type = "string" } } } } }
        [[tracking_plans.rules]]
        type = "IDENTIFY"
        jsonSchema = { type = "object", properties = { traits = { type = "object", properties = { email = { type = "string" }, age = { type = "integer" } } } } }
        [[tracking_plans.rules]]
        type = "GROUP"
        jsonSchema = { type = "object", properties = { traits = { type = "object", properties = { name = { type = "string" }, employees = { type = "integer" } } } } }
        [[tracking_plans.rules]]
        type = "COMMON"
        jsonSchema = { type = "object", required = ["userId"] }
    "#;

    fn source(enforcement: &str, controls: &str) -> SourceProtocols {
        let text = format!(
            "{PLAN}\n[[sources]]\nid = \"web\"\ntracking_plan = \"tp\"\nenforcement = \"{enforcement}\"\nprotocols = {{ {controls} }}\n"
        );
        let doc = Document::parse(&text).expect("valid catalog");
        let plan = Arc::new(Plan::compile(&doc.tracking_plans[0]).expect("compiles"));
        let s = &doc.sources[0];
        SourceProtocols {
            plan,
            enforcement: s.enforcement,
            controls: Controls::resolve(s.enforcement, &s.protocols).expect("controls"),
        }
    }

    struct Outcome {
        blocked: Option<&'static str>,
        types: Vec<&'static str>,
        omitted: Vec<String>,
        omitted_on_violation: Vec<String>,
        stored: serde_json::Value,
    }

    fn run(sp: &SourceProtocols, kind: Kind, msg: serde_json::Value) -> Outcome {
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        let Value::Object(mut obj) = simd_json::to_borrowed_value(&mut bytes).expect("parses")
        else {
            panic!("object")
        };
        let r = review(sp, "web", kind, &mut obj);
        Outcome {
            blocked: r.blocked,
            types: r.violations.iter().map(|v| v.kind).collect(),
            omitted: r.omitted,
            omitted_on_violation: r.omitted_on_violation,
            stored: to_serde_object(&obj),
        }
    }

    fn track(props: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"userId": "u", "event": "Order Completed", "properties": props})
    }

    /// mode × finding × call type → decision, annotations and the event as stored.
    #[test]
    fn action_matrix() {
        let good = track(serde_json::json!({"total": 10.5, "currency": "EUR"}));
        let unplanned_prop = track(serde_json::json!({"total": 1, "coupon": "X"}));
        let missing = track(serde_json::json!({"currency": "EUR"}));
        let bad_type = track(serde_json::json!({"total": "ten"}));
        let bad_enum = track(serde_json::json!({"total": 1, "currency": "GBP"}));
        let unplanned_event =
            serde_json::json!({"userId": "u", "event": "Mystery", "properties": {}});
        let no_user = serde_json::json!({"anonymousId": "a", "event": "Order Completed", "properties": {"total": 1}});
        let identify_bad =
            serde_json::json!({"userId": "u", "traits": {"age": "old", "nickname": "z"}});
        let group_bad = serde_json::json!({"userId": "u", "groupId": "g", "traits": {"name": "Acme", "employees": "many"}});

        type Case<'a> = (
            &'a str,
            &'a str,
            Kind,
            &'a serde_json::Value,
            Option<&'static str>,
            &'a [&'static str],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            // mode, controls, kind, event, blocked, violation types, omitted, omitted_on_violation
            ("warn", "", Kind::Track, &good, None, &[], &[], &[]),
            ("block", "", Kind::Track, &good, None, &[], &[], &[]),
            (
                "warn",
                "",
                Kind::Track,
                &unplanned_event,
                None,
                &["Unplanned Event"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Track,
                &unplanned_event,
                Some("unplanned_event"),
                &["Unplanned Event"],
                &[],
                &[],
            ),
            (
                "block",
                "unplanned_events = \"allow\"",
                Kind::Track,
                &unplanned_event,
                None,
                &["Unplanned Event"],
                &[],
                &[],
            ),
            (
                "warn",
                "",
                Kind::Track,
                &unplanned_prop,
                None,
                &["Unplanned Property"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Track,
                &unplanned_prop,
                None,
                &["Unplanned Property"],
                &[],
                &[],
            ),
            (
                "warn",
                "unplanned_properties = \"omit\"",
                Kind::Track,
                &unplanned_prop,
                None,
                &["Unplanned Property"],
                &["coupon"],
                &[],
            ),
            (
                "warn",
                "",
                Kind::Track,
                &missing,
                None,
                &["Required"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Track,
                &missing,
                Some("violation"),
                &["Required"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Track,
                &bad_type,
                Some("violation"),
                &["Invalid Type"],
                &[],
                &[],
            ),
            (
                "warn",
                "violations = \"omit\"",
                Kind::Track,
                &bad_type,
                None,
                &["Invalid Type"],
                &[],
                &["total"],
            ),
            (
                "warn",
                "",
                Kind::Track,
                &bad_enum,
                None,
                &["Enum"],
                &[],
                &[],
            ),
            (
                "block",
                "violations = \"allow\"",
                Kind::Track,
                &bad_enum,
                None,
                &["Enum"],
                &[],
                &[],
            ),
            (
                "warn",
                "",
                Kind::Track,
                &no_user,
                None,
                &["Required"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Track,
                &no_user,
                Some("common_violation"),
                &["Required"],
                &[],
                &[],
            ),
            (
                "block",
                "common_violations = \"allow\"",
                Kind::Track,
                &no_user,
                None,
                &["Required"],
                &[],
                &[],
            ),
            (
                "warn",
                "",
                Kind::Identify,
                &identify_bad,
                None,
                &["Unplanned Trait", "Invalid Type"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Identify,
                &identify_bad,
                Some("violation"),
                &["Unplanned Trait", "Invalid Type"],
                &[],
                &[],
            ),
            (
                "warn",
                "unplanned_properties = \"omit\", violations = \"omit\"",
                Kind::Identify,
                &identify_bad,
                None,
                &["Unplanned Trait", "Invalid Type"],
                &["nickname"],
                &["age"],
            ),
            (
                "warn",
                "",
                Kind::Group,
                &group_bad,
                None,
                &["Invalid Type"],
                &[],
                &[],
            ),
            (
                "block",
                "",
                Kind::Group,
                &group_bad,
                Some("violation"),
                &["Invalid Type"],
                &[],
                &[],
            ),
            // Per-call-type tables override the source-wide controls for that type only.
            (
                "block",
                "group = { violations = \"omit\" }",
                Kind::Group,
                &group_bad,
                None,
                &["Invalid Type"],
                &[],
                &["employees"],
            ),
            (
                "block",
                "group = { violations = \"omit\" }",
                Kind::Track,
                &missing,
                Some("violation"),
                &["Required"],
                &[],
                &[],
            ),
            (
                "warn",
                "track = { unplanned_events = \"block\" }",
                Kind::Track,
                &unplanned_event,
                Some("unplanned_event"),
                &["Unplanned Event"],
                &[],
                &[],
            ),
            (
                "warn",
                "violations = \"block\", identify = { violations = \"allow\" }",
                Kind::Identify,
                &identify_bad,
                None,
                &["Unplanned Trait", "Invalid Type"],
                &[],
                &[],
            ),
            // Page calls without a rule are not "unplanned" (only track events are).
            (
                "block",
                "",
                Kind::Page,
                &serde_json::json!({"userId": "u", "name": "Home"}),
                None,
                &[],
                &[],
                &[],
            ),
        ];
        for (i, (mode, controls, kind, msg, blocked, types, omitted, on_violation)) in
            cases.iter().enumerate()
        {
            let sp = source(mode, controls);
            let out = run(&sp, *kind, (*msg).clone());
            let case = format!("case {i}: {mode} {controls} {kind:?}");
            assert_eq!(out.blocked, *blocked, "{case}");
            assert_eq!(out.types, *types, "{case}");
            assert_eq!(out.omitted, *omitted, "{case}");
            assert_eq!(out.omitted_on_violation, *on_violation, "{case}");
            let field = if *kind == Kind::Identify {
                "traits"
            } else {
                "properties"
            };
            for k in omitted.iter().chain(on_violation.iter()) {
                assert!(
                    out.stored[field].get(*k).is_none(),
                    "{case}: {k} still stored"
                );
            }
            let annotation = &out.stored["context"]["protocols"];
            if types.is_empty() {
                assert!(
                    annotation.is_null(),
                    "{case}: clean events are not annotated"
                );
            } else {
                assert_eq!(annotation["trackingPlanId"], "tp", "{case}");
                assert_eq!(
                    annotation["violations"].as_array().map(Vec::len),
                    Some(types.len()),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn violations_use_segment_wording_and_dotted_fields() {
        let sp = source("warn", "");
        let mut bytes =
            serde_json::to_vec(&track(serde_json::json!({"currency": "EUR"}))).expect("json");
        let Value::Object(mut obj) = simd_json::to_borrowed_value(&mut bytes).expect("parses")
        else {
            panic!("object")
        };
        let r = review(&sp, "web", Kind::Track, &mut obj);
        assert_eq!(
            r.violations,
            [Violation {
                kind: "Required",
                field: "properties.total".into(),
                description: "properties.total is required".into()
            }]
        );
        let out = run(&sp, Kind::Track, track(serde_json::json!({"total": "ten"})));
        assert_eq!(
            out.stored["context"]["protocols"]["violations"][0]["description"],
            "Invalid type. Expected: number, given: string"
        );
        assert_eq!(
            out.stored["context"]["protocols"]["violations"][0]["field"],
            "properties.total"
        );
    }

    #[test]
    fn event_version_picks_the_rule_and_defaults_to_the_oldest() {
        let sp = source("block", "");
        let v2 = |props: serde_json::Value| {
            let mut e = track(props);
            e["context"] = serde_json::json!({"protocols": {"event_version": 2}});
            e
        };
        assert_eq!(
            run(&sp, Kind::Track, v2(serde_json::json!({"total": 1}))).blocked,
            Some("violation"),
            "v2 needs order_id"
        );
        assert_eq!(
            run(
                &sp,
                Kind::Track,
                v2(serde_json::json!({"total": 1, "order_id": "o"}))
            )
            .blocked,
            None
        );
        assert_eq!(
            run(&sp, Kind::Track, track(serde_json::json!({"total": 1}))).blocked,
            None,
            "no version: the oldest (v1)"
        );
        let annotated = run(
            &sp,
            Kind::Track,
            v2(serde_json::json!({"total": 1, "order_id": "o", "extra": 1})),
        );
        assert_eq!(
            annotated.stored["context"]["protocols"]["event_version"], 2,
            "the client's version is kept"
        );
    }

    /// Whether a catalog text can be installed (parsed, then checked and built).
    fn installable(text: &str) -> Result<(), String> {
        let doc = Document::parse(text).map_err(|e| e.to_string())?;
        crate::catalog::Snapshot::try_build(1, &doc)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn bad_plans_and_controls_are_refused() {
        let base = "[[sources]]\nid = \"web\"\n";
        for bad in [
            "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\njsonSchema = {}\n",
            "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"NOPE\"\nkey = \"x\"\njsonSchema = {}\n",
            "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"x\"\njsonSchema = { type = 5 }\n",
            // Backreferences and lookaround need a backtracking engine: refused, so no
            // pattern can cost more than linear time per event.
            "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"x\"\njsonSchema = { properties = { properties = { properties = { sku = { type = \"string\", pattern = '^(a)\\1$' } } } } }\n",
            "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"x\"\njsonSchema = { patternProperties = { '(?=x)y' = {} } }\n",
        ] {
            assert!(installable(&format!("{base}{bad}")).is_err(), "{bad}");
        }
        // The classic catastrophic pattern compiles (the linear engine has no cliff).
        let catastrophic = "[[tracking_plans]]\nid = \"tp\"\n[[tracking_plans.rules]]\ntype = \"TRACK\"\nkey = \"x\"\njsonSchema = { properties = { properties = { properties = { sku = { type = \"string\", pattern = '^(a+)+$' } } } } }\n";
        let error = installable(&format!("{base}{catastrophic}"));
        assert!(error.is_ok(), "{:?}", error.err());
        assert!(installable("[[sources]]\nid = \"web\"\ntracking_plan = \"missing\"\n").is_err());
        let plan = "[[tracking_plans]]\nid = \"tp\"\n";
        assert!(installable(&format!("{plan}[[sources]]\nid = \"web\"\ntracking_plan = \"tp\"\nprotocols = {{ unplanned_events = \"omit\" }}\n")).is_err());
        assert!(installable(&format!("{plan}[[sources]]\nid = \"web\"\nprotocols = {{ forward_blocked_to = \"nowhere\" }}\n")).is_err());
        assert!(
            installable("[[sources]]\nid = \"web\"\nprotocols = { bogus = \"x\" }\n").is_err(),
            "unknown control"
        );
        assert!(
            installable("[[sources]]\nid = \"web\"\nprotocols = { track = { bogus = \"x\" } }\n")
                .is_err()
        );
    }
}
