//! `/sources/{id}/settings`: a source's tracking-plan controls in the shape of Segment's
//! schema settings (`listSchemaSettingsInSource`, `updateSchemaSettingsInSource`).
//!
//! Sluice keeps the controls as [`ControlsDoc`] (`unplanned_events`, `unplanned_properties`,
//! `violations`, `common_violations`, per call type or for all): Segment's booleans map
//! onto them one to one, and back.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::destinations::{REDACTED, installable};
use super::sources::visible;
use super::wire::Data;
use super::{Api, ApiError, Body, Caller, Path, data};
use crate::control::audit::Kind;
use crate::control::policy::{Action, ResourceRef};
use crate::control::store::sources;
use crate::protocols::{CallControlsDoc, ControlsDoc};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/sources/{id}/settings", get(read).patch(update))
}

/// Controls of track calls, as Segment names them.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrackSettings {
    /// Events with no rule pass (`false`: blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_unplanned_events: Option<bool>,
    /// Properties no rule names pass (`false`: omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_unplanned_event_properties: Option<bool>,
    /// An event that violates its rule passes (`false`: blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_event_on_violations: Option<bool>,
    /// The properties that violate pass (`false`: omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_properties_on_violations: Option<bool>,
    /// `ALLOW`, `BLOCK` or `OMIT_PROPERTIES` on COMMON-rule violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(ALLOW|BLOCK|OMIT_PROPERTIES)$")]
    common_event_on_violations: Option<String>,
}

/// Controls of identify or group calls, as Segment names them.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraitSettings {
    /// Traits no rule names pass (`false`: omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_unplanned_traits: Option<bool>,
    /// The traits that violate pass (`false`: omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow_traits_on_violations: Option<bool>,
    /// `ALLOW`, `BLOCK` or `OMIT_TRAITS` on COMMON-rule violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(ALLOW|BLOCK|OMIT_TRAITS)$")]
    common_event_on_violations: Option<String>,
}

/// A source's schema settings.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaSettings {
    /// Controls of track calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    track: Option<TrackSettings>,
    /// Controls of identify calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identify: Option<TraitSettings>,
    /// Controls of group calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<TraitSettings>,
    /// The source violations are sent to as `Violation Generated` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forwarding_violations_to: Option<String>,
    /// The source blocked events are sent to, unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    forwarding_blocked_events_to: Option<String>,
}

/// `{"sourceId", "settings"}`: a source's schema settings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSchemaSettings {
    /// The source.
    pub source_id: String,
    /// Its settings (every control, as Segment names it).
    pub settings: SchemaSettings,
}

fn allows(value: Option<&str>, refused: &str) -> bool {
    value != Some(refused)
}

fn common(value: Option<&str>, omit: &str) -> String {
    match value {
        Some("block") => "BLOCK".into(),
        Some("omit") => omit.into(),
        _ => "ALLOW".into(),
    }
}

/// What Segment's settings say of these controls.
fn settings_of(doc: &ControlsDoc) -> SchemaSettings {
    let of = |call: &Option<CallControlsDoc>| -> CallControlsDoc {
        let own = call.clone().unwrap_or_default();
        CallControlsDoc {
            unplanned_events: own.unplanned_events.or(doc.all.unplanned_events.clone()),
            unplanned_properties: own
                .unplanned_properties
                .or(doc.all.unplanned_properties.clone()),
            violations: own.violations.or(doc.all.violations.clone()),
            common_violations: own.common_violations.or(doc.all.common_violations.clone()),
        }
    };
    let traits = |c: CallControlsDoc| TraitSettings {
        allow_unplanned_traits: Some(allows(c.unplanned_properties.as_deref(), "omit")),
        allow_traits_on_violations: Some(allows(c.violations.as_deref(), "omit")),
        common_event_on_violations: Some(common(c.common_violations.as_deref(), "OMIT_TRAITS")),
    };
    let track = of(&doc.track);
    SchemaSettings {
        track: Some(TrackSettings {
            allow_unplanned_events: Some(allows(track.unplanned_events.as_deref(), "block")),
            allow_unplanned_event_properties: Some(allows(
                track.unplanned_properties.as_deref(),
                "omit",
            )),
            allow_event_on_violations: Some(allows(track.violations.as_deref(), "block")),
            allow_properties_on_violations: Some(allows(track.violations.as_deref(), "omit")),
            common_event_on_violations: Some(common(
                track.common_violations.as_deref(),
                "OMIT_PROPERTIES",
            )),
        }),
        identify: Some(traits(of(&doc.identify))),
        group: Some(traits(of(&doc.group))),
        forwarding_violations_to: doc.forward_violations_to.clone(),
        forwarding_blocked_events_to: doc.forward_blocked_to.clone(),
    }
}

fn choice(allow: bool, refused: &str) -> Option<String> {
    Some(if allow { "allow" } else { refused }.to_owned())
}

fn common_choice(field: &str, value: &str, omit: &str) -> Result<Option<String>, ApiError> {
    match value {
        "ALLOW" => Ok(Some("allow".into())),
        "BLOCK" => Ok(Some("block".into())),
        v if v == omit => Ok(Some("omit".into())),
        _ => Err(ApiError::field(field, format!("ALLOW, BLOCK or {omit}"))),
    }
}

/// Applies Segment's settings onto the controls (fields left out stay as they are).
fn apply(doc: &mut ControlsDoc, patch: SchemaSettings) -> Result<(), ApiError> {
    if let Some(t) = patch.track {
        let c = doc.track.get_or_insert_with(CallControlsDoc::default);
        if let Some(v) = t.allow_unplanned_events {
            c.unplanned_events = choice(v, "block");
        }
        if let Some(v) = t.allow_unplanned_event_properties {
            c.unplanned_properties = choice(v, "omit");
        }
        match (
            t.allow_event_on_violations,
            t.allow_properties_on_violations,
        ) {
            (Some(false), _) => c.violations = Some("block".into()),
            (_, Some(false)) => c.violations = Some("omit".into()),
            (Some(true), _) | (_, Some(true)) => c.violations = Some("allow".into()),
            (None, None) => {}
        }
        if let Some(v) = &t.common_event_on_violations {
            c.common_violations =
                common_choice("track.commonEventOnViolations", v, "OMIT_PROPERTIES")?;
        }
    }
    for (name, patch, slot) in [
        ("identify", patch.identify, &mut doc.identify),
        ("group", patch.group, &mut doc.group),
    ] {
        if let Some(t) = patch {
            let c = slot.get_or_insert_with(CallControlsDoc::default);
            if let Some(v) = t.allow_unplanned_traits {
                c.unplanned_properties = choice(v, "omit");
            }
            if let Some(v) = t.allow_traits_on_violations {
                c.violations = choice(v, "omit");
            }
            if let Some(v) = &t.common_event_on_violations {
                c.common_violations =
                    common_choice(&format!("{name}.commonEventOnViolations"), v, "OMIT_TRAITS")?;
            }
        }
    }
    // `<redacted>` is a hidden target as it was read: it stays.
    if let Some(to) = patch.forwarding_violations_to.filter(|to| to != REDACTED) {
        doc.forward_violations_to = (!to.is_empty()).then_some(to);
    }
    if let Some(to) = patch
        .forwarding_blocked_events_to
        .filter(|to| to != REDACTED)
    {
        doc.forward_blocked_to = (!to.is_empty()).then_some(to);
    }
    Ok(())
}

/// The settings as `caller` sees them: a forwarding target hidden from them reads
/// `<redacted>` (sent back unchanged, it leaves the forwarding as it is).
async fn shown(api: &Api, caller: &Caller, doc: &ControlsDoc) -> Result<SchemaSettings, ApiError> {
    let mut settings = settings_of(doc);
    for to in [
        &mut settings.forwarding_violations_to,
        &mut settings.forwarding_blocked_events_to,
    ] {
        let Some(id) = to.as_deref().filter(|id| !id.is_empty()) else {
            continue;
        };
        let seen = super::destinations::seen_sources(api, caller, &[id.to_owned()]).await?;
        if seen.is_empty() {
            *to = Some(REDACTED.to_owned());
        }
    }
    Ok(settings)
}

fn controls_of(source: &sources::SourceRow) -> Result<ControlsDoc, ApiError> {
    serde_json::from_value(source.controls.clone()).map_err(|e| {
        tracing::error!(source = %source.id, error = %e, "unreadable source controls");
        ApiError::Internal
    })
}

/// A source's schema settings (Segment's shape of Sluice's tracking-plan controls).
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/settings",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "A source's schema settings.", body = Data<SourceSchemaSettings>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let source = visible(&api, &caller, &id, Action::ViewSource).await?;
    Ok(data(SourceSchemaSettings {
        source_id: source.id.clone(),
        settings: shown(&api, &caller, &controls_of(&source)?).await?,
    }))
}

/// Everything a change of source `id`'s schema settings asks of the policy before it
/// changes anything: the source as it is, and its controls after the change.
pub(super) async fn check_update(
    api: &Api,
    caller: &Caller,
    id: &str,
    patch: SchemaSettings,
) -> Result<(sources::SourceRow, ControlsDoc), ApiError> {
    let before = visible(api, caller, id, Action::EditSource).await?;
    let mut doc = controls_of(&before)?;
    let was = (
        doc.forward_violations_to.clone(),
        doc.forward_blocked_to.clone(),
    );
    apply(&mut doc, patch)?;
    // Forwarding sends events into another source (and on to its destinations): the
    // caller must be able to edit that source. A hidden one answers as a missing one,
    // before anything else can tell them apart.
    for (target, before) in [
        (&doc.forward_violations_to, &was.0),
        (&doc.forward_blocked_to, &was.1),
    ] {
        if let Some(target) = target.as_ref().filter(|t| Some(*t) != before.as_ref()) {
            let missing = || ApiError::missing("source", target);
            let mut conn = api.store.read().await?;
            let found = sources::get(&mut conn, &caller.workspace.id, target).await?;
            drop(conn);
            let source = found.ok_or_else(missing)?;
            let resource = ResourceRef::Source(source.as_ref());
            if caller.decide(Action::ViewSource, resource).hidden() {
                return Err(missing());
            }
            api.allow(caller, Action::EditSource, resource, missing())
                .await?;
        }
    }
    Ok((before, doc))
}

/// The sources a source's events are forwarded into (violations, blocked events).
pub(super) fn forwarding_targets(source: &sources::SourceRow) -> Vec<String> {
    controls_of(source)
        .map(|doc| forwarded_by(&doc))
        .unwrap_or_default()
}

/// The sources controls forward events into.
pub(super) fn forwarded_by(doc: &ControlsDoc) -> Vec<String> {
    [&doc.forward_violations_to, &doc.forward_blocked_to]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// Change a source's schema settings (fields left out stay as they are).
#[utoipa::path(
    patch,
    path = "/api/v1/sources/{id}/settings",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = SchemaSettings,
    responses((status = 200, description = "The source's schema settings after the change.", body = Data<SourceSchemaSettings>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(patch): Body<SchemaSettings>,
) -> Result<Response, ApiError> {
    let (before, doc) = check_update(&api, &caller, &id, patch).await?;
    let mut row = before.clone();
    row.controls = serde_json::to_value(&doc).map_err(|_| ApiError::Internal)?;
    row.updated_at = caller.now;
    let mut change = api.store.change().await?;
    sources::update(change.conn(), &row).await?;
    // A forwarding target must exist, and the controls must make sense together.
    installable(&api, &mut change, &caller.workspace.id).await?;
    change
        .record(caller.draft(
            Kind::SourceSettingsUpdate,
            "source",
            &id,
            Some(json!({"controls": before.controls})),
            Some(json!({"controls": row.controls})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(SourceSchemaSettings {
        source_id: id,
        settings: shown(&api, &caller, &doc).await?,
    }))
}
