//! Production protection: sources carrying a protected label (e.g. `environment:prod`),
//! and the destinations connected to them, are changed at once by owners and admins only
//! ([`Action::ApplyProtectedChange`]). Anyone else who may make the change gets `202`
//! and a *resource change request* instead: the API call as they made it, kept (its body
//! sealed) until an owner or admin approves it (the call is then made again as the
//! approver's, so it passes every check the approver's own call would), rejects it, or
//! its author withdraws it. A request whose resource changed since it was proposed is
//! refused on approval: it is proposed again, never applied over a newer state.
//!
//! [`guard`] sits on the API's routes and lets through everything that is not a change
//! to a protected resource; the routes it weighs are listed in `Route::of`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use utoipa::ToSchema;

use super::destinations::{CreateDestination, REDACTED, UpdateDestination};
use super::prose::{Remark, Why, prose};
use super::source_settings::{self, SchemaSettings};
use super::sources::{LabelsBody, UpdateSource};
use super::wire::{Data, Pagination};
use super::{Api, ApiError, Body, Caller, MAX_BODY_BYTES, PageQuery, Path, Query, data, page_of};
use super::{function_instances, source_functions};
use crate::control::audit::Kind;
use crate::control::policy::{Action, ChangeRequestRef, DestinationRef, ResourceRef};
use crate::control::store::resource_changes::{self as store, ResourceChangeRow, Status};
use crate::control::store::sources::{self, SourceRow};
use crate::control::store::{destinations, functions, new_id, plans};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/resource-change-requests", get(list))
        .route("/resource-change-requests/{id}", get(read))
        .route("/resource-change-requests/{id}/approve", post(approve))
        .route("/resource-change-requests/{id}/reject", post(reject))
        .route("/resource-change-requests/{id}/withdraw", post(withdraw))
        .route(
            "/settings/protected-labels",
            get(read_labels).put(set_labels),
        )
}

/// Marks a call replayed by an approval: the guard lets it through (only this module
/// makes one).
#[derive(Debug, Clone)]
struct Applying;

/// A change the guard weighs, by route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A call on `/sources/{id}…` that needs `action` on the source.
    Source(Action),
    /// A call on `/destinations/{id}` that needs `action` on the destination.
    Destination(Action),
    /// `POST /sources/{id}/writekey`: a new write key.
    NewKey,
    /// `DELETE /sources/{id}/writekey/{key}`: a write key revoked.
    RevokeKey,
    /// `POST /destinations`: a new destination connected to `sourceId`.
    NewDestination,
    /// `PATCH /sources/{id}`: name, enabled, plan, enforcement, rate.
    SourceUpdate,
    /// Adding labels to a source, or replacing them all.
    SourceLabels {
        /// Replacing (else adding).
        replace: bool,
    },
    /// `PATCH /sources/{id}/settings`: the source's controls, forwarding included.
    SourceSettings,
    /// Connecting a tracking plan to a source (`sourceId` in the body) or disconnecting
    /// it (`sourceId` in the query).
    PlanLink {
        /// Connecting (else disconnecting).
        connect: bool,
    },
    /// `POST /insert-function-instances`: an insert function put on a destination.
    NewInstance,
    /// `PATCH` or `DELETE /insert-function-instances/{id}`: a destination's insert
    /// function changed or taken off.
    Instance {
        /// A `PATCH` (else a `DELETE`).
        update: bool,
    },
    /// `PUT /sources/{id}/function`: a source function put on a source.
    SourceFunctionPut,
    /// `DELETE /sources/{id}/function` or `POST /sources/{id}/function/secret`: a
    /// source's source function taken off, or given a new secret.
    SourceFunction,
    /// `POST /functions/{id}/deploy`: a function's newest version put to work on every
    /// destination and source it runs on.
    Deploy,
}

impl Route {
    /// The change a call makes, by its method and route template (under `/api/v1`).
    fn of(method: &Method, template: &str) -> Option<Self> {
        let route = match (method.as_str(), template) {
            ("PATCH", "/sources/{id}") => Self::SourceUpdate,
            ("PATCH", "/sources/{id}/settings") => Self::SourceSettings,
            ("POST", "/sources/{id}/labels") => Self::SourceLabels { replace: false },
            ("PUT", "/sources/{id}/labels") => Self::SourceLabels { replace: true },
            ("DELETE", "/sources/{id}") => Self::Source(Action::DeleteSource),
            ("PUT", "/sources/{id}/consent" | "/sources/{id}/pii") => {
                Self::Source(Action::EditSourcePrivacy)
            }
            ("PUT", "/destinations/{id}/consent") => {
                Self::Destination(Action::EditDestinationPrivacy)
            }
            ("POST", "/sources/{id}/writekey") => Self::NewKey,
            ("DELETE", "/sources/{id}/writekey/{key}") => Self::RevokeKey,
            ("PATCH", "/destinations/{id}") => Self::Destination(Action::EditDestination),
            ("DELETE", "/destinations/{id}") => Self::Destination(Action::DeleteDestination),
            ("POST", "/destinations") => Self::NewDestination,
            ("POST", "/tracking-plans/{id}/sources") => Self::PlanLink { connect: true },
            ("DELETE", "/tracking-plans/{id}/sources") => Self::PlanLink { connect: false },
            ("POST", "/insert-function-instances") => Self::NewInstance,
            ("PATCH", "/insert-function-instances/{id}") => Self::Instance { update: true },
            ("DELETE", "/insert-function-instances/{id}") => Self::Instance { update: false },
            ("PUT", "/sources/{id}/function") => Self::SourceFunctionPut,
            ("POST", "/functions/{id}/deploy") => Self::Deploy,
            ("DELETE" | "POST", "/sources/{id}/function" | "/sources/{id}/function/secret")
                if (method == Method::DELETE) == template.ends_with("/function") =>
            {
                Self::SourceFunction
            }
            _ => return None,
        };
        Some(route)
    }
}

/// Whether `source` carries one of the protected `labels` (`key:value`).
pub fn is_protected(source: &SourceRow, labels: &[String]) -> bool {
    source.labels.iter().any(|(k, v)| {
        labels
            .iter()
            .any(|l| l.split_once(':') == Some((k.as_str(), v.as_str())))
    })
}

/// Whether a call of `method` on `template` (under `/api/v1`) is one the guard may keep
/// for review (its answer may be `202`).
pub fn guarded(method: &Method, template: &str) -> bool {
    Route::of(method, template).is_some()
}

/// What a change touches: the resource it names, its state now, and the sources that
/// make it protected.
struct Target {
    resource_type: &'static str,
    resource_id: String,
    before: Value,
    sources: Vec<SourceRow>,
    /// The body an approval sends instead of the author's, when the author's would mean
    /// something else coming from the approver (see [`Call::replay`]).
    replay: Option<Value>,
    /// A function's settings in the call as a reviewer may read them (sensitive values
    /// `<redacted>`), worked out from the function's declarations when proposed.
    shown_settings: Option<Value>,
}

impl Target {
    /// A change to destination `id` (its connections make it protected).
    async fn destination(api: &Api, caller: &Caller, id: &str) -> Result<Self, ApiError> {
        let row = super::destinations::visible(api, caller, id, Action::EditDestination).await?;
        Ok(Self {
            resource_type: "destination",
            resource_id: id.to_owned(),
            before: destination_state(api, &caller.workspace.id, &row).await?,
            sources: sources_named(api, caller, &row.doc.sources).await?,
            replay: None,
            shown_settings: None,
        })
    }

    /// A change to `source` alone.
    async fn source(api: &Api, caller: &Caller, source: SourceRow) -> Result<Self, ApiError> {
        Self::source_with(api, caller, source, Vec::new()).await
    }

    /// A change to `source` that also touches `others` (sources it forwards into, …).
    async fn source_with(
        api: &Api,
        caller: &Caller,
        source: SourceRow,
        mut others: Vec<SourceRow>,
    ) -> Result<Self, ApiError> {
        let before = source_state(api, &caller.workspace.id, &source).await?;
        let resource_id = source.id.clone();
        others.push(source);
        Ok(Self {
            resource_type: "source",
            resource_id,
            before,
            sources: others,
            replay: None,
            shown_settings: None,
        })
    }
}

/// A tracking plan's state as an approval compares it: linking a source to a plan
/// approves the version reviewed, not one published since.
async fn plan_state(api: &Api, caller: &Caller, id: &str) -> Result<Value, ApiError> {
    let mut conn = api.store.read().await?;
    let plan = plans::get(&mut conn, &caller.workspace.id, id).await?;
    Ok(plan.map_or(
        Value::Null,
        |p| json!({"id": p.id, "publishedVersion": p.published_version}),
    ))
}

/// A source's state as an approval compares it (labels, settings, keys).
async fn source_state(api: &Api, workspace: &str, source: &SourceRow) -> Result<Value, ApiError> {
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, &source.id).await?;
    let endpoint =
        functions::source_function_of(&mut conn, api.store.key(), workspace, &source.id).await?;
    drop(conn);
    let mut state = json!({
        "name": source.name,
        "enabled": source.enabled,
        "trackingPlanId": source.tracking_plan_id,
        "enforcement": source.enforcement,
        "controls": source.controls,
        "rate": [source.rate_per_second, source.rate_burst],
        "labels": source.labels,
        "writeKeys": keys
            .iter()
            .map(|k| json!({"id": k.id, "expiresAt": k.expires_at, "revokedAt": k.revoked_at}))
            .collect::<Vec<_>>(),
        "updatedAt": source.updated_at,
    });
    // Privacy settings are shown only when set (requests proposed before they were
    // compared stay approvable).
    if source.without_consent != crate::consent::WithoutConsent::Deliver {
        state["withoutConsent"] = json!(source.without_consent);
    }
    if !source.pii.is_empty() {
        state["pii"] = json!(source.pii);
    }
    // Only a source with a source function has this key (requests proposed before it
    // was compared stay approvable).
    if let Some(e) = endpoint {
        state["sourceFunction"] = attached_state(
            api,
            workspace,
            &e.id,
            &e.function_id,
            e.enabled,
            e.updated_at,
        )
        .await?;
    }
    Ok(state)
}

/// A function attached somewhere (a destination's insert function, a source's source
/// function) as an approval compares it.
async fn attached_state(
    api: &Api,
    workspace: &str,
    id: &str,
    function: &str,
    enabled: bool,
    updated_at: DateTime<Utc>,
) -> Result<Value, ApiError> {
    Ok(json!({
        "id": id,
        "function": function_state(api, workspace, function).await?,
        "enabled": enabled,
        "updatedAt": updated_at,
    }))
}

/// A function's state as an approval compares it: the version that runs where it is
/// deployed (a deployment since the proposal makes the request stale).
async fn function_state(api: &Api, workspace: &str, id: &str) -> Result<Value, ApiError> {
    let mut conn = api.store.read().await?;
    let function = functions::get(&mut conn, workspace, id).await?;
    Ok(function.map_or(
        Value::Null,
        |f| json!({"id": f.id, "deployedVersion": f.deployed_version}),
    ))
}

/// A destination's state as an approval compares it (its secrets left out).
async fn destination_state(
    api: &Api,
    workspace: &str,
    row: &destinations::DestinationRow,
) -> Result<Value, ApiError> {
    let mut conn = api.store.read().await?;
    let instance = functions::instance_on(&mut conn, api.store.key(), workspace, &row.id).await?;
    drop(conn);
    let mut state = json!({
        "name": row.name,
        "enabled": row.enabled,
        "sources": row.doc.sources,
        "updatedAt": row.updated_at,
    });
    if !row.doc.consent_categories.is_empty() {
        state["consentCategories"] = json!(row.doc.consent_categories);
    }
    // As a source's function: present only when there is one.
    if let Some(i) = instance {
        state["insertFunction"] = attached_state(
            api,
            workspace,
            &i.id,
            &i.function_id,
            i.enabled,
            i.updated_at,
        )
        .await?;
    }
    Ok(state)
}

/// The sources named `ids` that exist in the workspace.
async fn sources_named(
    api: &Api,
    caller: &Caller,
    ids: &[String],
) -> Result<Vec<SourceRow>, ApiError> {
    let mut conn = api.store.read().await?;
    let mut found: Vec<SourceRow> = Vec::new();
    for id in ids {
        if found.iter().any(|s| s.id == *id) {
            continue;
        }
        if let Some(s) = sources::get(&mut conn, &caller.workspace.id, id).await? {
            found.push(s);
        }
    }
    Ok(found)
}

fn field(body: &Value, name: &str) -> Option<String> {
    body.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The target of a call, checked as the handler checks it (a hidden resource answers
/// as a missing one; a caller who may not make the change is refused, not queued).
async fn target(
    api: &Api,
    caller: &Caller,
    route: Route,
    (id, key): (Option<&str>, Option<&str>),
    bytes: &[u8],
    body: &Value,
    query: &str,
) -> Result<Target, ApiError> {
    let id = id.unwrap_or_default();
    match route {
        Route::SourceUpdate => {
            let Body(update) = Body::<UpdateSource>::from_bytes(bytes)?;
            let (source, _) = super::sources::check_update(api, caller, id, &update).await?;
            let mut before = source_state(api, &caller.workspace.id, &source).await?;
            if let Some(plan) = field(body, "trackingPlanId") {
                before["plan"] = plan_state(api, caller, &plan).await?;
            }
            Ok(Target {
                resource_type: "source",
                resource_id: id.to_owned(),
                before,
                sources: vec![source],
                replay: None,
                shown_settings: None,
            })
        }
        Route::SourceLabels { replace } => {
            let Body(labels) = Body::<LabelsBody>::from_bytes(bytes)?;
            let (source, _) =
                super::sources::check_labels(api, caller, id, &labels, replace).await?;
            Target::source(api, caller, source).await
        }
        Route::RevokeKey => {
            let (source, _) =
                super::sources::check_remove_key(api, caller, id, key.unwrap_or_default()).await?;
            Target::source(api, caller, source).await
        }
        Route::NewKey => {
            let Body(key) = Body::<super::sources::AddKey>::from_bytes(bytes)?;
            let source = super::sources::check_add_key(api, caller, id, &key).await?;
            Target::source(api, caller, source).await
        }
        Route::Source(Action::DeleteSource) => {
            let source = super::sources::check_delete(api, caller, id).await?;
            // Deleting a source ends its forwarding and cuts it from its destinations:
            // changes to the sources it forwards into and to those destinations.
            let mut named = source_settings::forwarding_targets(&source);
            let mut conn = api.store.read().await?;
            for row in destinations::all(&mut conn, api.store.key(), &caller.workspace.id).await? {
                if row.doc.sources.contains(&source.id) {
                    named.extend(row.doc.sources);
                }
            }
            drop(conn);
            let others = sources_named(api, caller, &named).await?;
            Target::source_with(api, caller, source, others).await
        }
        Route::Source(action) => {
            let source = super::sources::visible(api, caller, id, action).await?;
            Target::source(api, caller, source).await
        }
        Route::SourceSettings => {
            let Body(patch) = Body::<SchemaSettings>::from_bytes(bytes)?;
            let (source, after) = source_settings::check_update(api, caller, id, patch).await?;
            // Events forwarded into a protected source are a change to it.
            let mut named = source_settings::forwarding_targets(&source);
            named.extend(source_settings::forwarded_by(&after));
            let others = sources_named(api, caller, &named).await?;
            Target::source_with(api, caller, source, others).await
        }
        Route::Destination(Action::EditDestination) => {
            let Body(update) = Body::<UpdateDestination>::from_bytes(bytes)?;
            let checked = super::destinations::check_update(api, caller, id, &update).await?;
            let (row, after) = (checked.before, checked.sources);
            let mut named = row.doc.sources.clone();
            // The approver sees connections hidden from the author: the approval sends
            // the whole list as the author's call would have made it.
            let replay = after.as_ref().map(|list| {
                let mut body = body.clone();
                body["sources"] = json!(list);
                body
            });
            named.extend(after.unwrap_or_default());
            Ok(Target {
                resource_type: "destination",
                resource_id: id.to_owned(),
                before: destination_state(api, &caller.workspace.id, &row).await?,
                sources: sources_named(api, caller, &named).await?,
                replay,
                shown_settings: None,
            })
        }
        Route::Destination(action) => {
            let row = super::destinations::visible(api, caller, id, action).await?;
            let named = row.doc.sources.clone();
            Ok(Target {
                resource_type: "destination",
                resource_id: id.to_owned(),
                before: destination_state(api, &caller.workspace.id, &row).await?,
                sources: sources_named(api, caller, &named).await?,
                replay: None,
                shown_settings: None,
            })
        }
        Route::NewDestination => {
            let Body(create) = Body::<CreateDestination>::from_bytes(bytes)?;
            // Its id is fixed now: an approval made twice cannot create two.
            let id = super::destinations::check_create(api, caller, &create)
                .await?
                .id;
            let mut replay = body.clone();
            replay["id"] = json!(id);
            Ok(Target {
                resource_type: "destination",
                resource_id: id,
                before: Value::Null,
                sources: sources_named(api, caller, &[create.source_id]).await?,
                replay: Some(replay),
                shown_settings: None,
            })
        }
        Route::PlanLink { connect } => {
            // Weighed by the source the handler reads: the body's to connect, the
            // query's to disconnect.
            let named = if connect {
                Body::<super::plans::ConnectSource>::from_bytes(bytes)?
                    .0
                    .source_id
            } else {
                Query::<super::plans::SourceQuery>::parse(query)?
                    .0
                    .source_id
            };
            let (plan, source) = super::plans::check_link(api, caller, id, &named, connect).await?;
            let mut before = source_state(api, &caller.workspace.id, &source).await?;
            before["plan"] = plan_state(api, caller, &plan.id).await?;
            Ok(Target {
                resource_type: "source",
                resource_id: source.id.clone(),
                before,
                sources: vec![source],
                replay: None,
                shown_settings: None,
            })
        }
        Route::NewInstance => {
            let Body(create) = Body::<function_instances::CreateInstance>::from_bytes(bytes)?;
            let weighed = function_instances::check_create(api, caller, create).await?;
            let mut target = Target::destination(api, caller, &weighed.destination).await?;
            target.before["proposedFunction"] =
                function_state(api, &caller.workspace.id, &weighed.function).await?;
            target.shown_settings = weighed.settings;
            Ok(target)
        }
        Route::Instance { update } => {
            let body = if update {
                Some(Body::<function_instances::UpdateInstance>::from_bytes(bytes)?.0)
            } else {
                None
            };
            let weighed = function_instances::check_change(api, caller, id, body).await?;
            let mut target = Target::destination(api, caller, &weighed.destination).await?;
            target.shown_settings = weighed.settings;
            Ok(target)
        }
        Route::SourceFunctionPut => {
            let Body(put) = Body::<source_functions::PutSourceFunction>::from_bytes(bytes)?;
            let (function, shown) = source_functions::check_put(api, caller, id, put).await?;
            let source = super::sources::visible(api, caller, id, Action::EditSource).await?;
            let mut target = Target::source(api, caller, source).await?;
            target.before["proposedFunction"] =
                function_state(api, &caller.workspace.id, &function).await?;
            target.shown_settings = Some(shown);
            Ok(target)
        }
        Route::SourceFunction => {
            source_functions::check_change(api, caller, id).await?;
            let source = super::sources::visible(api, caller, id, Action::EditSource).await?;
            Target::source(api, caller, source).await
        }
        Route::Deploy => {
            let (function, feeding) = super::functions::check_deploy(api, caller, id).await?;
            // The approval deploys the version reviewed, or nothing.
            let replay = json!({"version": function.latest_version});
            Ok(Target {
                resource_type: "function",
                resource_id: function.id.clone(),
                before: deploy_state(api, &caller.workspace.id, &function).await?,
                sources: feeding,
                replay: Some(replay),
                shown_settings: None,
            })
        }
    }
}

/// A function's state as an approved deployment compares it: a version written or
/// deployed since the proposal, or a change to where it runs (attached, detached, a
/// destination's sources), makes the request stale.
async fn deploy_state(
    api: &Api,
    workspace: &str,
    function: &functions::FunctionRow,
) -> Result<Value, ApiError> {
    Ok(json!({
        "id": function.id,
        "latestVersion": function.latest_version,
        "deployedVersion": function.deployed_version,
        "placement": super::functions::placement(api, workspace, &function.id).await?,
    }))
}

/// The current state of a request's resource (`Null`: gone, or a new destination).
async fn state_now(api: &Api, caller: &Caller, rc: &ResourceChangeRow) -> Result<Value, ApiError> {
    let mut state = resource_now(api, caller, rc).await?;
    // The function a request puts somewhere: as deployed now.
    if let Some(proposed) = rc.before.get("proposedFunction")
        && !state.is_null()
    {
        state["proposedFunction"] = match proposed.get("id").and_then(Value::as_str) {
            Some(id) => function_state(api, &caller.workspace.id, id).await?,
            None => Value::Null,
        };
    }
    Ok(state)
}

/// The current state of a request's resource, as [`state_now`] compares it.
async fn resource_now(
    api: &Api,
    caller: &Caller,
    rc: &ResourceChangeRow,
) -> Result<Value, ApiError> {
    if rc.before.is_null() {
        return Ok(Value::Null);
    }
    let mut conn = api.store.read().await?;
    if rc.resource_type == "function" {
        let found = functions::get(&mut conn, &caller.workspace.id, &rc.resource_id).await?;
        drop(conn);
        return match found {
            Some(function) => deploy_state(api, &caller.workspace.id, &function).await,
            None => Ok(Value::Null),
        };
    }
    if rc.resource_type == "source" {
        let found = sources::get(&mut conn, &caller.workspace.id, &rc.resource_id).await?;
        drop(conn);
        let Some(source) = found else {
            return Ok(Value::Null);
        };
        let mut state = source_state(api, &caller.workspace.id, &source).await?;
        if let Some(plan) = rc.before.get("plan") {
            state["plan"] = match plan.get("id").and_then(Value::as_str) {
                Some(id) => plan_state(api, caller, id).await?,
                None => Value::Null,
            };
        }
        return Ok(state);
    }
    let found = destinations::get(
        &mut conn,
        api.store.key(),
        &caller.workspace.id,
        &rc.resource_id,
    )
    .await?;
    drop(conn);
    match found {
        Some(row) => destination_state(api, &caller.workspace.id, &row).await,
        None => Ok(Value::Null),
    }
}

/// Lets a call through unless it changes a protected resource and the caller may not
/// apply such a change at once; then the call is kept for review and answered `202`.
pub async fn guard(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    if request.extensions().get::<Applying>().is_some() {
        return next.run(request).await;
    }
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().trim_start_matches("/api/v1").to_owned());
    let Some(route) = template.and_then(|t| Route::of(request.method(), &t)) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &api).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let labels = {
        let conn = api.store.read().await;
        match conn {
            Ok(mut conn) => store::protected_labels(&mut conn, &caller.workspace.id).await,
            Err(e) => Err(e),
        }
    };
    let labels = match labels {
        Ok(labels) if labels.is_empty() => {
            return next.run(Request::from_parts(parts, body)).await;
        }
        Ok(labels) => labels,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::TooLarge.into_response();
    };
    match propose(&api, &caller, &mut parts, route, &labels, &bytes).await {
        Ok(Some(answer)) => answer,
        Ok(None) => next.run(Request::from_parts(parts, bytes.into())).await,
        Err(e) => e.into_response(),
    }
}

/// Keeps the call as a request when it touches a protected source the caller may not
/// change at once; `None`: let it through.
async fn propose(
    api: &Api,
    caller: &Caller,
    parts: &mut Parts,
    route: Route,
    labels: &[String],
    bytes: &[u8],
) -> Result<Option<Response>, ApiError> {
    // Fail closed: a body that is not JSON is refused here (some handlers never read
    // theirs, and an empty or blank body reads as `{}`).
    let body: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::Invalid {
            message: format!("the body is not JSON: {e}"),
            field: None,
        })?
    };
    let params = RawPathParams::from_request_parts(parts, api).await.ok();
    let param = |name: &str| {
        params.as_ref().and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let (id, key) = (param("id"), param("key"));
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let target = target(
        api,
        caller,
        route,
        (id.as_deref(), key.as_deref()),
        bytes,
        &body,
        &query,
    )
    .await?;
    let protected: Vec<&SourceRow> = target
        .sources
        .iter()
        .filter(|s| is_protected(s, labels))
        .collect();
    let at_once = protected.iter().all(|s| {
        caller
            .decide(
                Action::ApplyProtectedChange,
                ResourceRef::Source(s.as_ref()),
            )
            .allowed
    });
    if at_once {
        return Ok(None);
    }
    let description = match parts.headers.get("x-change-description") {
        Some(v) => prose(
            "X-Change-Description",
            v.to_str()
                .map_err(|_| ApiError::field("X-Change-Description", "printable text"))?,
        )?,
        None => String::new(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::field("body", "UTF-8 JSON"))?;
    let id = new_id("rc_");
    let path = match parts.uri.query() {
        Some(q) => format!("{}?{q}", parts.uri.path()),
        None => parts.uri.path().to_owned(),
    };
    let path = path.trim_start_matches("/api/v1").to_owned();
    let call = Call {
        path: path.clone(),
        body: text.to_owned(),
        replay: target.replay.as_ref().map(Value::to_string),
        shown_settings: target.shown_settings.clone(),
    };
    let sealed_body = serde_json::to_string(&call)
        .map_err(|_| ApiError::Internal)
        .and_then(|plain| {
            api.store
                .key()
                .seal(&plain, &format!("resource_change:{id}"))
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot seal a resource change");
                    ApiError::Internal
                })
        })?;
    let rc = ResourceChangeRow {
        id,
        resource_type: target.resource_type.to_owned(),
        resource_id: target.resource_id,
        protected_sources: protected.iter().map(|s| s.id.clone()).collect(),
        author_id: caller.user.id.clone(),
        description,
        method: parts.method.to_string(),
        path: shown_path(&path),
        sealed_body,
        before: target.before,
        status: Status::Open,
        created_at: caller.now,
        updated_at: caller.now,
        decided_by: None,
        decided_at: None,
        comment: String::new(),
    };
    let shown = wire(api, &rc);
    let mut change = api.store.change().await?;
    store::insert(change.conn(), &caller.workspace.id, &rc).await?;
    change
        .record(caller.draft(
            Kind::ResourceChangeCreate,
            "resource_change",
            &rc.id,
            None,
            Some(serde_json::to_value(&shown).unwrap_or_default()),
        ))
        .await?;
    change.commit().await?;
    let mut answer = data(ResourceChangeOne {
        resource_change_request: shown_to(api, caller, &target.sources, &rc).await?,
    });
    *answer.status_mut() = StatusCode::ACCEPTED;
    Ok(Some(answer))
}

/// A request to change a protected resource.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChange {
    /// Id (`rc_…`).
    pub id: String,
    /// `source`, `destination`, or `function` (a deployment).
    pub resource_type: String,
    /// Its id (a new destination's: the id asked for, or empty).
    pub resource_id: String,
    /// The protected sources that made the change a request.
    pub protected_sources: Vec<String>,
    /// Who asked (user id).
    pub author_id: String,
    /// Why (the `X-Change-Description` header of the call).
    pub description: String,
    /// The call: method.
    pub method: String,
    /// The call: path under `/api/v1`, with its query (a write key in it hidden).
    pub path: String,
    /// The call: its JSON body (`settings` shown as anyone may read a destination's:
    /// a URL's host, credentials replaced).
    #[schema(value_type = Object)]
    pub body: Value,
    /// The resource when proposed (approval refuses if it changed since; a source's
    /// write keys left out).
    #[schema(value_type = Object)]
    pub before: Value,
    /// `OPEN`, `APPLYING`, `APPLIED`, `REJECTED` or `WITHDRAWN`.
    pub status: String,
    /// Proposed.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Who approved, rejected or withdrew it.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The reviewer's comment.
    pub comment: String,
}

/// `{"resourceChangeRequest": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChangeOne {
    /// The request.
    pub resource_change_request: ResourceChange,
}

/// An approval's answer: the request, and what the replayed call answered.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChangeApplied {
    /// The request.
    pub resource_change_request: ResourceChange,
    /// The `data` of the call's own answer (a new write key is shown here, once).
    #[schema(value_type = Object)]
    pub result: Value,
}

/// A page of requests.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceChangeList {
    /// The requests.
    pub resource_change_requests: Vec<ResourceChange>,
    /// Paging.
    pub pagination: Pagination,
}

/// The call as made, kept sealed: its path (a write key revoked by its plaintext has the
/// key in it) and its body (a destination's credentials).
#[derive(Debug, Serialize, Deserialize)]
struct Call {
    path: String,
    body: String,
    /// The body an approval sends, when not the author's: a destination's connections
    /// with those hidden from the author kept, a new destination's id fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replay: Option<String>,
    /// A function's settings in the body as a reviewer may read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shown_settings: Option<Value>,
}

/// The path as shown: a write key in it is hidden.
fn shown_path(path: &str) -> String {
    match path.split_once("/writekey/") {
        Some((head, key)) if !key.starts_with("wk_") => format!("{head}/writekey/[hidden]"),
        _ => path.to_owned(),
    }
}

/// The call, opened.
fn opened(api: &Api, rc: &ResourceChangeRow) -> Result<Call, ApiError> {
    let fail = |why: String| {
        tracing::error!(error = %why, id = %rc.id, "cannot open a resource change");
        ApiError::Internal
    };
    let plain = api
        .store
        .key()
        .open(&rc.sealed_body, &format!("resource_change:{}", rc.id))
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(plain.expose()).map_err(|e| fail(e.to_string()))
}

/// Settings that are not those of a known type: every value hidden.
fn hidden(settings: &Value) -> Value {
    match settings.as_object() {
        Some(map) => map
            .keys()
            .map(|k| (k.clone(), Value::String(REDACTED.into())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        None => Value::String(REDACTED.into()),
    }
}

/// Whether the caller may view source `id`; `gone`: the answer when it no longer exists.
async fn sees_source(api: &Api, caller: &Caller, id: &str, gone: bool) -> Result<bool, ApiError> {
    let mut conn = api.store.read().await?;
    Ok(
        match sources::get(&mut conn, &caller.workspace.id, id).await? {
            Some(s) => {
                caller
                    .decide(Action::ViewSource, ResourceRef::Source(s.as_ref()))
                    .allowed
            }
            None => gone,
        },
    )
}

/// The call's body as sent (`Null` if it cannot be opened).
fn call_body(api: &Api, rc: &ResourceChangeRow) -> Value {
    opened(api, rc)
        .ok()
        .and_then(|call| serde_json::from_str::<Value>(&call.body).ok())
        .unwrap_or(Value::Null)
}

/// Replaces a source id hidden from the caller (a forwarding target) by `<redacted>`.
async fn hide_source(api: &Api, caller: &Caller, id: Option<&mut Value>) -> Result<(), ApiError> {
    if let Some(Value::String(id)) = id
        && !id.is_empty()
        && !sees_source(api, caller, id, false).await?
    {
        *id = REDACTED.to_owned();
    }
    Ok(())
}

/// The request as `caller` sees it: the sources hidden from them left out of
/// `protectedSources` and of a destination's proposed connections, and a proposed
/// forwarding into one hidden (a destination fed by a source they may not see is
/// protected by it all the same).
async fn shown_to(
    api: &Api,
    caller: &Caller,
    protected: &[SourceRow],
    rc: &ResourceChangeRow,
) -> Result<ResourceChange, ApiError> {
    let mut shown = wire(api, rc);
    shown.protected_sources.retain(|id| {
        protected.iter().any(|s| {
            s.id == *id
                && caller
                    .decide(Action::ViewSource, ResourceRef::Source(s.as_ref()))
                    .allowed
        })
    });
    if let Some(Value::Array(connected)) = shown.body.get_mut("sources") {
        let ids: Vec<String> = connected
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        let seen = super::destinations::seen_sources(api, caller, &ids).await?;
        *connected = seen.into_iter().map(Value::String).collect();
    }
    for field in ["forwardingViolationsTo", "forwardingBlockedEventsTo"] {
        hide_source(api, caller, shown.body.get_mut(field)).await?;
    }
    if let Some(controls) = shown.before.get_mut("controls") {
        for field in ["forward_violations_to", "forward_blocked_to"] {
            hide_source(api, caller, controls.get_mut(field)).await?;
        }
    }
    Ok(shown)
}

/// The request in full (as the audit trail keeps it).
fn wire(api: &Api, rc: &ResourceChangeRow) -> ResourceChange {
    let call = opened(api, rc).ok();
    let mut body = call
        .as_ref()
        .and_then(|call| serde_json::from_str::<Value>(&call.body).ok())
        .unwrap_or(Value::Null);
    let kind = body
        .get("metadataId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // A function's settings are read by its own declarations (worked out when the call
    // was kept), never as some destination type's.
    let function_call = rc.path.starts_with("/insert-function-instances")
        || rc.path.ends_with("/function")
        || rc.path.ends_with("/function/secret");
    let worked_out = call.and_then(|call| call.shown_settings);
    if let Some(settings) = body.get_mut("settings") {
        *settings = match (worked_out, function_call) {
            (Some(shown), _) => shown,
            (None, true) => hidden(settings),
            (None, false) => super::destinations::redacted_proposal(kind.as_deref(), settings)
                .unwrap_or_else(|| hidden(settings)),
        };
    }
    // Write keys' ids and expiry are the source's to show, not the request's; a
    // destination's connections may name sources hidden from who reads it.
    let mut before = rc.before.clone();
    if let Some(state) = before.as_object_mut() {
        state.remove("writeKeys");
        state.remove("sources");
    }
    ResourceChange {
        id: rc.id.clone(),
        resource_type: rc.resource_type.clone(),
        resource_id: rc.resource_id.clone(),
        protected_sources: rc.protected_sources.clone(),
        author_id: rc.author_id.clone(),
        description: rc.description.clone(),
        method: rc.method.clone(),
        path: rc.path.clone(),
        body,
        before,
        status: rc.status.name().to_owned(),
        created_at: rc.created_at,
        updated_at: rc.updated_at,
        decided_by: rc.decided_by.clone(),
        decided_at: rc.decided_at,
        comment: rc.comment.clone(),
    }
}

/// Whether the caller may see the request: they must see the resource it changes (a
/// new destination: the source it connects), and, unless they wrote it, every protected
/// source it names (an author may change a destination fed by a protected source hidden
/// from them). A resource or protected source deleted since is seen by its author and
/// by those who may apply protected changes (who reject it).
async fn seen(
    api: &Api,
    caller: &Caller,
    protected: &[SourceRow],
    rc: &ResourceChangeRow,
) -> Result<bool, ApiError> {
    let author = rc.author_id == caller.user.id;
    let reviewer = author
        || caller
            .decide(Action::ApplyProtectedChange, ResourceRef::Workspace)
            .allowed;
    let view = |s: &SourceRow| {
        caller
            .decide(Action::ViewSource, ResourceRef::Source(s.as_ref()))
            .allowed
    };
    let sources = author
        || rc.protected_sources.iter().all(|id| {
            protected
                .iter()
                .find(|s| s.id == *id)
                .map_or(reviewer, view)
        });
    if !sources {
        return Ok(false);
    }
    let resource = match (rc.resource_type.as_str(), rc.before.is_null()) {
        ("source", _) => sees_source(api, caller, &rc.resource_id, reviewer).await?,
        // A deployment says where a function runs: its author and the reviewers only
        // (a reader may not see every destination it runs on).
        ("function", _) => reviewer,
        // A new destination: the source it would be connected to.
        (_, true) => {
            let connects = field(&call_body(api, rc), "sourceId").unwrap_or_default();
            sees_source(api, caller, &connects, reviewer).await?
        }
        (_, false) => {
            let mut conn = api.store.read().await?;
            let found = destinations::get(
                &mut conn,
                api.store.key(),
                &caller.workspace.id,
                &rc.resource_id,
            )
            .await?;
            found.map_or(reviewer, |_| {
                caller
                    .decide(
                        Action::ViewDestination,
                        ResourceRef::Destination(DestinationRef {
                            id: &rc.resource_id,
                            connected: &[],
                        }),
                    )
                    .allowed
            })
        }
    };
    Ok(resource)
}

/// A request the caller may see; hidden and missing answer alike.
async fn load(
    api: &Api,
    caller: &Caller,
    id: &str,
) -> Result<(ResourceChangeRow, Vec<SourceRow>), ApiError> {
    let mut conn = api.store.read().await?;
    let missing = || ApiError::missing("resource change request", id);
    let rc = store::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(missing)?;
    drop(conn);
    let protected = sources_named(api, caller, &rc.protected_sources).await?;
    if !seen(api, caller, &protected, &rc).await? {
        return Err(missing());
    }
    Ok((rc, protected))
}

/// Asks the policy whether the caller may decide `rc` as `action`, audited when refused.
async fn allowed(
    api: &Api,
    caller: &Caller,
    action: Action,
    rc: &ResourceChangeRow,
) -> Result<(), ApiError> {
    let cr = ChangeRequestRef {
        id: &rc.id,
        author: &rc.author_id,
    };
    api.allow(
        caller,
        action,
        ResourceRef::ChangeRequest(cr),
        ApiError::missing("resource change request", &rc.id),
    )
    .await?;
    Ok(())
}

/// How long a request may stay `APPLYING` before it counts as stuck (its approval was
/// cut short, by a crash say): a stuck request may be rejected or withdrawn.
const STUCK_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

fn still_open(rc: &ResourceChangeRow) -> Result<(), ApiError> {
    if rc.status == Status::Open {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "resource change request {} is {}, not OPEN",
        rc.id,
        rc.status.name()
    )))
}

/// A request that may still be closed: open, or stuck applying.
fn closable(rc: &ResourceChangeRow, now: DateTime<Utc>) -> Result<Status, ApiError> {
    if rc.status == Status::Applying && now - rc.updated_at >= STUCK_AFTER {
        return Ok(Status::Applying);
    }
    still_open(rc).map(|()| Status::Open)
}

/// `GET /resource-change-requests`: a page, optionally by status.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Page size (1 to 200, default 10).
    #[serde(rename = "pagination[count]", default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    count: Option<String>,
    /// Opaque cursor from the previous page's `pagination.next`.
    #[serde(rename = "pagination[cursor]", default)]
    #[param(pattern = "^(MA|YWZ0ZXI6([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?)?$")]
    cursor: Option<String>,
    /// Only requests in this state.
    #[serde(default)]
    #[param(pattern = "^(OPEN|APPLYING|APPLIED|REJECTED|WITHDRAWN)$")]
    status: Option<String>,
}

/// List the requests to change protected resources the caller may see, oldest id first.
#[utoipa::path(
    get,
    path = "/api/v1/resource-change-requests",
    tag = "Change Requests",
    params(ListQuery),
    responses((status = 200, description = "List resource change requests.", body = Data<ResourceChangeList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let page = PageQuery {
        count: q.count,
        cursor: q.cursor,
    }
    .page()?;
    let status = match q.status.as_deref() {
        None => "",
        Some(s) => Status::parse(s)
            .ok_or_else(|| {
                ApiError::field("status", "OPEN, APPLYING, APPLIED, REJECTED or WITHDRAWN")
            })?
            .name(),
    };
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    // Rows hidden from the caller are skipped and more are read in their place: a page
    // and its cursor end on a request the caller sees, so neither tells a hidden one.
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    let mut after = page.after.clone();
    'read: loop {
        let mut conn = api.store.read().await?;
        let rows = store::list(&mut conn, &caller.workspace.id, status, &after, page.count).await?;
        drop(conn);
        let exhausted = rows.len() < page.count as usize;
        for rc in &rows {
            after.clone_from(&rc.id);
            let protected = sources_named(&api, &caller, &rc.protected_sources).await?;
            if seen(&api, &caller, &protected, rc).await? {
                out.push(shown_to(&api, &caller, &protected, rc).await?);
                last = Some(rc.id.clone());
                if out.len() == page.count as usize {
                    break 'read;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let shown = out.len();
    Ok(page_of(
        out,
        &page,
        shown,
        last.as_deref(),
        |resource_change_requests, pagination| ResourceChangeList {
            resource_change_requests,
            pagination,
        },
    ))
}

/// Get a request to change a protected resource.
#[utoipa::path(
    get,
    path = "/api/v1/resource-change-requests/{id}",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Resource change request id")),
    responses((status = 200, description = "Get a resource change request.", body = Data<ResourceChangeOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rc, protected) = load(&api, &caller, &id).await?;
    Ok(data(ResourceChangeOne {
        resource_change_request: shown_to(&api, &caller, &protected, &rc).await?,
    }))
}

/// Approve a request: its call is made again as the approver's (owners and admins, never
/// on their own request unless the workspace allows self-approval). The call's own
/// answer is in `result`; if the call fails, its error is the answer and the request
/// stays open.
#[utoipa::path(
    post,
    path = "/api/v1/resource-change-requests/{id}/approve",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Resource change request id")),
    request_body = Remark,
    responses((status = 200, description = "Approve and apply a resource change request.", body = Data<ResourceChangeApplied>))
)]
async fn approve(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    parts: Parts,
    Body(body): Body<Remark>,
) -> Result<Response, ApiError> {
    let comment = body.text()?;
    let (mut rc, protected) = load(&api, &caller, &id).await?;
    still_open(&rc)?;
    allowed(&api, &caller, Action::ApplyProtectedChange, &rc).await?;
    // Claimed before anything is compared or called, so two approvals never apply it
    // twice, and a change that lands before the claim is seen by the comparison.
    rc.status = Status::Applying;
    rc.updated_at = caller.now;
    let mut change = api.store.change().await?;
    if !store::settle(change.conn(), &rc, Status::Open).await? {
        return Err(ApiError::Conflict(format!(
            "{id} was decided while this request ran"
        )));
    }
    change.commit().await?;
    let stale = match state_now(&api, &caller, &rc).await {
        Ok(now) => (now != rc.before).then(|| {
            ApiError::Conflict(format!(
                "the {} {:?} changed since {} was proposed: propose the change again",
                rc.resource_type, rc.resource_id, rc.id
            ))
        }),
        Err(e) => Some(e),
    };
    if let Some(refusal) = stale {
        rc.status = Status::Open;
        let mut change = api.store.change().await?;
        store::settle(change.conn(), &rc, Status::Applying).await?;
        change.commit().await?;
        return Err(refusal);
    }

    let answer = replay(&api, &rc, &parts).await;
    let status = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let mut change = api.store.change().await?;
    if !status.is_success() {
        rc.status = Status::Open;
        if !store::settle(change.conn(), &rc, Status::Applying).await? {
            tracing::warn!(id = %rc.id, "a resource change request was closed while its approval failed");
        }
        change.commit().await?;
        let mut failed = Response::new(axum::body::Body::from(bytes));
        *failed.status_mut() = status;
        failed.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        return Ok(failed);
    }
    rc.status = Status::Applied;
    rc.decided_by = Some(caller.user.id.clone());
    rc.decided_at = Some(caller.now);
    rc.comment = comment;
    if !store::settle(change.conn(), &rc, Status::Applying).await? {
        // Closed as stuck while the call ran: the call applied all the same, and the
        // approval below says so in the audit trail.
        tracing::error!(id = %rc.id, "a resource change request was closed as stuck while its approval applied it");
    }
    let shown = wire(&api, &rc);
    change
        .record(caller.draft(
            Kind::ResourceChangeApprove,
            "resource_change",
            &rc.id,
            None,
            Some(json!({ "request": &shown, "answered": status.as_u16() })),
        ))
        .await?;
    change.commit().await?;
    let result = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or(Value::Null);
    Ok(data(ResourceChangeApplied {
        resource_change_request: shown_to(&api, &caller, &protected, &rc).await?,
        result,
    }))
}

/// Makes the request's call again, as the approver's (their credentials and address).
async fn replay(api: &Arc<Api>, rc: &ResourceChangeRow, approval: &Parts) -> Response {
    let call = match opened(api, rc) {
        Ok(call) => call,
        Err(e) => return e.into_response(),
    };
    let Ok(method) = Method::from_bytes(rc.method.as_bytes()) else {
        return ApiError::Internal.into_response();
    };
    let body = call.replay.unwrap_or(call.body);
    let mut request = Request::new(axum::body::Body::from(body));
    *request.method_mut() = method;
    match format!("/api/v1{}", call.path).parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return ApiError::Internal.into_response(),
    }
    for (name, value) in &approval.headers {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(peer) = approval.extensions.get::<ConnectInfo<SocketAddr>>() {
        request.extensions_mut().insert(*peer);
    }
    request.extensions_mut().insert(Applying);
    match super::router(api.clone()).oneshot(request).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    }
}

/// Reject a request (owners and admins), saying why.
#[utoipa::path(
    post,
    path = "/api/v1/resource-change-requests/{id}/reject",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Resource change request id")),
    request_body = Why,
    responses((status = 200, description = "Reject a resource change request.", body = Data<ResourceChangeOne>))
)]
async fn reject(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Why>,
) -> Result<Response, ApiError> {
    let comment = prose("comment", &body.comment)?;
    let (rc, protected) = load(&api, &caller, &id).await?;
    let from = closable(&rc, caller.now)?;
    allowed(&api, &caller, Action::ApplyProtectedChange, &rc).await?;
    end_as(
        &api,
        &caller,
        (rc, from, &protected),
        Status::Rejected,
        comment,
        Kind::ResourceChangeReject,
    )
    .await
}

/// Withdraw your own request.
#[utoipa::path(
    post,
    path = "/api/v1/resource-change-requests/{id}/withdraw",
    tag = "Change Requests",
    params(("id" = String, Path, description = "Resource change request id")),
    responses((status = 200, description = "Withdraw a resource change request.", body = Data<ResourceChangeOne>))
)]
async fn withdraw(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (rc, protected) = load(&api, &caller, &id).await?;
    let from = closable(&rc, caller.now)?;
    allowed(&api, &caller, Action::AmendChangeRequest, &rc).await?;
    end_as(
        &api,
        &caller,
        (rc, from, &protected),
        Status::Withdrawn,
        String::new(),
        Kind::ResourceChangeWithdraw,
    )
    .await
}

/// Closes a request that is `from` (open, or stuck applying) and answers it.
async fn end_as(
    api: &Api,
    caller: &Caller,
    (mut rc, from, protected): (ResourceChangeRow, Status, &[SourceRow]),
    status: Status,
    comment: String,
    kind: Kind,
) -> Result<Response, ApiError> {
    rc.status = status;
    rc.decided_by = Some(caller.user.id.clone());
    rc.decided_at = Some(caller.now);
    rc.updated_at = caller.now;
    rc.comment = comment;
    let mut change = api.store.change().await?;
    if !store::settle(change.conn(), &rc, from).await? {
        return Err(ApiError::Conflict(format!(
            "{} was decided while this request ran",
            rc.id
        )));
    }
    let shown = wire(api, &rc);
    change
        .record(caller.draft(
            kind,
            "resource_change",
            &rc.id,
            None,
            Some(serde_json::to_value(&shown).unwrap_or_default()),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ResourceChangeOne {
        resource_change_request: shown_to(api, caller, protected, &rc).await?,
    }))
}

/// The labels that protect sources.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectedLabels {
    /// `key:value` labels (at most 50; key and value as a source label's); `[]` turns
    /// protection off.
    #[schema(max_items = 50)]
    pub labels: Vec<String>,
}

/// The labels whose sources (and the destinations connected to them) change through
/// review for everyone but owners and admins.
#[utoipa::path(
    get,
    path = "/api/v1/settings/protected-labels",
    tag = "Workspaces",
    responses((status = 200, description = "The labels that protect sources.", body = Data<ProtectedLabels>))
)]
async fn read_labels(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let labels = store::protected_labels(&mut conn, &caller.workspace.id).await?;
    Ok(data(ProtectedLabels { labels }))
}

/// Replace the labels that protect sources (owners and admins).
#[utoipa::path(
    put,
    path = "/api/v1/settings/protected-labels",
    tag = "Workspaces",
    request_body = ProtectedLabels,
    responses((status = 200, description = "The labels that protect sources.", body = Data<ProtectedLabels>))
)]
async fn set_labels(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<ProtectedLabels>,
) -> Result<Response, ApiError> {
    if body.labels.len() > 50 {
        return Err(ApiError::field("labels", "at most 50 labels"));
    }
    let mut labels = Vec::new();
    for label in &body.labels {
        // The labels a source may carry, and nothing else (another would protect nothing).
        let (key, value) = label.split_once(':').unwrap_or((label, ""));
        let part = |text: &str| super::slug_field("labels", text).is_ok();
        if !(part(key) && part(value)) {
            return Err(ApiError::field(
                "labels",
                "each `key:value`, both as a source label's: 1 to 64 of a-z, 0-9, '-' and '_'",
            ));
        }
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let mut change = api.store.change().await?;
    let before = store::protected_labels(change.conn(), &caller.workspace.id).await?;
    store::set_protected_labels(change.conn(), &caller.workspace.id, &labels).await?;
    change
        .record(caller.draft(
            Kind::ProtectedLabelsUpdate,
            "workspace",
            &caller.workspace.id,
            Some(json!({ "labels": before })),
            Some(json!({ "labels": labels })),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ProtectedLabels { labels }))
}
