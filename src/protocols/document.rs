//! Tracking plans and enforcement controls as written in the catalog (TOML) and sent by
//! the control plane: Segment's rule shape `{type, key, version, jsonSchema}`.

use serde::{Deserialize, Serialize};

fn one() -> u32 {
    1
}

/// `[[tracking_plans]]`: a set of rules (JSON Schema draft-07 each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDoc {
    /// Unique id (sources name it in `tracking_plan`).
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Plan version, recorded in `context.protocols`.
    #[serde(default = "one")]
    pub version: u32,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
}

/// One rule: `{type, key?, version, jsonSchema}` as in Segment's Public API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// `TRACK`, `IDENTIFY`, `GROUP`, `PAGE`, `SCREEN` or `COMMON`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(TRACK|IDENTIFY|GROUP|PAGE|SCREEN|COMMON)$")]
    pub kind: String,
    /// Event name (TRACK) or page/screen name; none for IDENTIFY, GROUP, COMMON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Event version (chosen by `context.protocols.event_version`). Default 1.
    #[serde(default = "one")]
    pub version: u32,
    /// JSON Schema (draft-07) over the whole message.
    #[serde(rename = "jsonSchema", alias = "json_schema")]
    #[schema(value_type = Object)]
    pub json_schema: serde_json::Value,
}

/// Per-source enforcement of its tracking plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// No validation work at all.
    #[default]
    Off,
    /// Events pass; violations are recorded in `context.protocols` and counted.
    Warn,
    /// Events with violations are not stored for delivery.
    Block,
}

/// Segment's finer controls (`[sources.protocols]`); each overrides what
/// `enforcement` implies, for every call type, and a `track`/`identify`/`group`/
/// `page`/`screen` table overrides them again for that call type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlsDoc {
    /// Track calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<CallControlsDoc>,
    /// Identify calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identify: Option<CallControlsDoc>,
    /// Group calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<CallControlsDoc>,
    /// Page calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<CallControlsDoc>,
    /// Screen calls only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<CallControlsDoc>,
    /// The four controls, for every call type.
    #[serde(flatten)]
    pub all: CallControlsDoc,
    /// Send blocked events, unchanged, into this source too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_blocked_to: Option<String>,
    /// Send each violation as a `Violation Generated` track event into this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_violations_to: Option<String>,
}

/// The finer controls of one call type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallControlsDoc {
    /// Events with no rule: `allow` or `block` (track calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplanned_events: Option<String>,
    /// Properties/traits not in the rule: `allow` or `omit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplanned_properties: Option<String>,
    /// Schema violations: `allow`, `omit` or `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<String>,
    /// COMMON-rule violations: `allow`, `omit` or `block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_violations: Option<String>,
}
