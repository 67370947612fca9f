//! `/sources`: CRUD, labels, write keys, connected destinations.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::schema;
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_in_memory, page_of, slug_field,
    success, text_field,
};
use crate::control::audit::Kind;
use crate::control::policy::{Action, DestinationRef, LabelChange, ResourceRef, SourceRef};
use crate::control::store::sources::{self, SourceRow, Viewer, WriteKeyRow};
use crate::control::store::{catalog::enforcement_name, destinations, from_hex32, grants, plans};
use crate::control::token;
use crate::protocols::Enforcement;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/sources", get(list).post(create))
        .route("/sources/{id}", get(read).patch(update).delete(remove))
        .route("/sources/{id}/writekey", post(add_key))
        .route("/sources/{id}/writekey/{key}", delete(remove_key))
        .route("/sources/{id}/writekeys", get(list_keys))
        .route("/sources/{id}/labels", post(add_labels).put(replace_labels))
        .route("/sources/{id}/connected-destinations", get(connected))
        .route("/sources/{id}/connected-warehouses", get(warehouses))
}

/// A source on the wire (Segment's `SourceV1` plus Sluice's fields). `writeKeys` holds
/// each live key's id (what `DELETE /sources/{id}/writekey/{key}` takes: Sluice keeps
/// only digests), and the plaintext of a key only in the answer that creates it.
pub fn wire(
    source: &SourceRow,
    workspace: &str,
    keys: &[WriteKeyRow],
    new_key: Option<&str>,
) -> Value {
    let mut write_keys: Vec<String> = keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.id.clone())
        .collect();
    if let Some(plain) = new_key {
        write_keys.push(plain.to_owned());
    }
    json!({
        "id": source.id,
        "slug": source.id,
        "name": source.name,
        "workspaceId": workspace,
        "enabled": source.enabled,
        "writeKeys": write_keys,
        "metadata": {
            "id": source.metadata_id,
            "slug": source.metadata_id,
            "name": source.metadata_id,
            "categories": [],
            "description": "",
            "logos": {"default": ""},
            "options": [],
            "isDeprecated": false,
            "isCloudEventSource": false,
        },
        "settings": {},
        "labels": source.labels.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        "trackingPlanId": source.tracking_plan_id,
        "enforcement": source.enforcement,
        "rateLimit": source.rate_per_second.map(|rps| json!({"requestsPerSecond": rps, "burst": source.rate_burst})),
        "createdAt": source.created_at,
        "updatedAt": source.updated_at,
    })
}

/// Loads a source the caller may see and act on; hidden and missing answer alike.
pub(super) async fn visible(
    api: &Api,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<SourceRow, ApiError> {
    let mut conn = api.store.read().await?;
    let missing = || ApiError::missing("source", id);
    let found = sources::get(&mut conn, &caller.workspace.id, id).await?;
    drop(conn);
    let Some(source) = found else {
        return Err(api
            .missing_target(caller, action, "source", id, missing())
            .await);
    };
    let resource = ResourceRef::Source(source.as_ref());
    api.allow_seen(
        caller,
        Action::ViewSource,
        action,
        resource,
        resource,
        missing,
    )
    .await?;
    Ok(source)
}

/// Asks the policy whether the caller may give `source` the labels `after` (labels that
/// carry grants are changed by owners and admins only).
async fn allow_labels(
    api: &Api,
    caller: &Caller,
    source: SourceRef<'_>,
    after: &[(String, String)],
) -> Result<(), ApiError> {
    let mut conn = api.store.read().await?;
    let governed = grants::governed_labels(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    let change = LabelChange {
        source,
        after,
        governed: &governed,
    };
    api.allow(
        caller,
        Action::ChangeLabels,
        ResourceRef::Labels(change),
        ApiError::missing("source", source.id),
    )
    .await?;
    Ok(())
}

/// List the sources the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "Sources",
    params(PageQuery),
    responses((status = 200, description = "List the sources the caller may see.", body = schema::Data<schema::SourceList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    let mut conn = api.store.read().await?;
    let viewer = Viewer {
        user: &caller.user,
        now: caller.now,
    };
    let rows = sources::list_visible(
        &mut conn,
        &caller.workspace.id,
        viewer,
        &page.after,
        page.count,
    )
    .await?;
    let mut keys = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => sources::keys_of_many(&mut conn, &first.id, &last.id).await?,
        _ => Default::default(),
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in &rows {
        // The SQL filter pre-selects; the policy still decides each row (the token's
        // scopes), and the cursor only ever names a row that was shown.
        if caller
            .decide(Action::ViewSource, ResourceRef::Source(row.as_ref()))
            .allowed
        {
            let keys = keys.remove(&row.id).unwrap_or_default();
            out.push(wire(row, &caller.workspace.id, &keys, None));
            last = Some(row.id.as_str());
        }
    }
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |items, pagination| json!({"sources": items, "pagination": pagination}),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateSource {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    slug: String,
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 200
    )]
    name: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    metadata_id: Option<String>,
    #[serde(default)]
    settings: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<LabelWire>>,
}

fn yes() -> bool {
    true
}

/// `{key, value, description?}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelWire {
    /// Key, e.g. `environment`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub key: String,
    /// Value, e.g. `prod`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub value: String,
    /// Free text (accepted, not stored per source).
    #[serde(default)]
    pub description: Option<String>,
}

/// Most labels one source carries.
pub const MAX_LABELS: usize = 50;

/// Validates labels: at most [`MAX_LABELS`], keys and values slug-like.
pub fn labels(field: &str, wire: &[LabelWire]) -> Result<Vec<(String, String)>, ApiError> {
    if wire.len() > MAX_LABELS {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    wire.iter()
        .enumerate()
        .map(|(i, l)| {
            Ok((
                slug_field(&format!("{field}[{i}].key"), &l.key)?,
                slug_field(&format!("{field}[{i}].value"), &l.value)?,
            ))
        })
        .collect()
}

fn no_settings(settings: Option<&Value>) -> Result<(), ApiError> {
    if settings.is_some_and(|s| !s.as_object().is_some_and(serde_json::Map::is_empty)) {
        return Err(ApiError::field(
            "settings",
            "Sluice sources have no settings; send {} or leave it out",
        ));
    }
    Ok(())
}

/// Create a source.
#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "Sources",
    request_body = CreateSource,
    responses((status = 200, description = "Create a source.", body = schema::Data<schema::SourceOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateSource>,
) -> Result<Response, ApiError> {
    let id = slug_field("slug", &body.slug)?;
    let name = match &body.name {
        Some(name) => text_field("name", name, 200)?,
        None => id.clone(),
    };
    no_settings(body.settings.as_ref())?;
    let labels = labels("labels", body.labels.as_deref().unwrap_or_default())?;
    let metadata_id: String = body.metadata_id.unwrap_or_default();
    if metadata_id.chars().count() > 100 {
        return Err(ApiError::field("metadataId", "at most 100 characters"));
    }
    api.allow_workspace(&caller, Action::CreateSource).await?;
    if !labels.is_empty() {
        let new = SourceRef {
            id: &id,
            labels: &[],
        };
        allow_labels(&api, &caller, new, &labels).await?;
    }
    let row = SourceRow {
        id: id.clone(),
        name,
        metadata_id,
        enabled: body.enabled,
        rate_per_second: None,
        rate_burst: None,
        tracking_plan_id: None,
        enforcement: "off".into(),
        controls: json!({}),
        labels,
        created_at: caller.now,
        updated_at: caller.now,
    };
    let mut change = api.store.change().await?;
    sources::insert(change.conn(), &caller.workspace.id, &row).await?;
    let after = wire(&row, &caller.workspace.id, &[], None);
    change
        .record(caller.draft(Kind::SourceCreate, "source", &id, None, Some(after.clone())))
        .await?;
    change.commit().await?;
    Ok(data(json!({ "source": after })))
}

/// Get a source.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Get a source.", body = schema::Data<schema::SourceOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let source = visible(&api, &caller, &id, Action::ViewSource).await?;
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, &id).await?;
    Ok(data(json!({
        "source": wire(&source, &caller.workspace.id, &keys, None),
        "trackingPlanId": source.tracking_plan_id,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateSource {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    settings: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    tracking_plan_id: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    enforcement: Option<Enforcement>,
    #[serde(default)]
    #[schema(value_type = Option<RateWire>)]
    rate_limit: Option<Option<RateWire>>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RateWire {
    requests_per_second: u32,
    #[serde(default)]
    burst: Option<u32>,
}

/// Update a source.
#[utoipa::path(
    patch,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = UpdateSource,
    responses((status = 200, description = "Update a source.", body = schema::Data<schema::SourceOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateSource>,
) -> Result<Response, ApiError> {
    let before = visible(&api, &caller, &id, Action::EditSource).await?;
    if body.slug.as_ref().is_some_and(|s| *s != id) {
        return Err(ApiError::field(
            "slug",
            "a source's slug is its id in stored events and cannot change",
        ));
    }
    no_settings(body.settings.as_ref())?;
    let mut row = before.clone();
    if let Some(name) = &body.name {
        row.name = text_field("name", name, 200)?;
    }
    if let Some(enabled) = body.enabled {
        row.enabled = enabled;
    }
    if let Some(enforcement) = body.enforcement {
        row.enforcement = enforcement_name(enforcement);
    }
    if let Some(rate) = body.rate_limit {
        if rate.is_some_and(|r| r.requests_per_second == 0) {
            return Err(ApiError::field(
                "rateLimit.requestsPerSecond",
                "must be at least 1",
            ));
        }
        row.rate_per_second = rate.map(|r| r.requests_per_second);
        row.rate_burst = rate.and_then(|r| r.burst);
    }
    if let Some(plan) = &body.tracking_plan_id {
        if let Some(plan) = plan {
            let mut conn = api.store.read().await?;
            plans::get(&mut conn, &caller.workspace.id, plan)
                .await?
                .ok_or_else(|| {
                    ApiError::field("trackingPlanId", format!("no tracking plan {plan:?}"))
                })?;
        }
        row.tracking_plan_id.clone_from(plan);
    }
    row.updated_at = caller.now;
    let mut change = api.store.change().await?;
    sources::update(change.conn(), &row).await?;
    let keys = sources::keys_of(change.conn(), &id).await?;
    let after = wire(&row, &caller.workspace.id, &keys, None);
    let was = wire(&before, &caller.workspace.id, &keys, None);
    change
        .record(caller.draft(
            Kind::SourceUpdate,
            "source",
            &id,
            Some(was),
            Some(after.clone()),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({ "source": after })))
}

/// Delete a source with its keys, labels, connections and grants.
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Delete a source with its keys, labels, connections and grants.", body = schema::Data<schema::Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let before = visible(&api, &caller, &id, Action::DeleteSource).await?;
    let mut change = api.store.change().await?;
    let keys = sources::keys_of(change.conn(), &id).await?;
    sources::delete(change.conn(), &id).await?;
    let was = wire(&before, &caller.workspace.id, &keys, None);
    change
        .record(caller.draft(Kind::SourceDelete, "source", &id, Some(was), None))
        .await?;
    change.commit().await?;
    Ok(success())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddKey {
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// Makes a new write key: 32 random base62 characters, shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/writekey",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = AddKey,
    responses((status = 200, description = "Create a write key (shown in this answer only).", body = schema::Data<schema::WriteKeyCreated>))
)]
async fn add_key(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AddKey>,
) -> Result<Response, ApiError> {
    let source = visible(&api, &caller, &id, Action::ManageWriteKeys).await?;
    if body.expires_at.is_some_and(|at| at <= caller.now) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    let plain = token::random_base62(32).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a write key");
        ApiError::Internal
    })?;
    let digest = token::digest_of(&plain).to_hex();
    let display = format!("{}…", &plain[..4]);
    let mut change = api.store.change().await?;
    let key = sources::add_key(
        change.conn(),
        &id,
        &digest,
        &display,
        &caller.user.id,
        body.expires_at,
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(
            Kind::SourceWritekeyCreate,
            "source",
            &id,
            None,
            Some(json!({ "writeKey": key })),
        ))
        .await?;
    let keys = sources::keys_of(change.conn(), &id).await?;
    change.commit().await?;
    let shown: Vec<WriteKeyRow> = keys.into_iter().filter(|k| k.id != key.id).collect();
    Ok(data(json!({
        "source": wire(&source, &caller.workspace.id, &shown, Some(&plain)),
        "writeKey": {"id": key.id, "key": plain, "expiresAt": key.expires_at},
    })))
}

/// Revokes a key named by its plaintext (Segment's path) or its id (`wk_…`).
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}/writekey/{key}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id"), ("key" = String, Path, description = "The key itself, or its id (wk_…)")),
    responses((status = 200, description = "Revoke a write key.", body = schema::Data<schema::Status>))
)]
async fn remove_key(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    visible(&api, &caller, &id, Action::ManageWriteKeys).await?;
    let digest = token::digest_of(&key);
    let mut change = api.store.change().await?;
    let keys = sources::keys_of(change.conn(), &id).await?;
    let found = keys
        .iter()
        .find(|k| {
            k.id == key || from_hex32(&k.digest).is_ok_and(|d| token::Digest(d).matches(&digest))
        })
        .ok_or_else(|| ApiError::missing("write key", "given"))?;
    sources::revoke_key(change.conn(), &found.id, caller.now).await?;
    change
        .record(caller.draft(
            Kind::SourceWritekeyRevoke,
            "source",
            &id,
            Some(json!({ "writeKey": found })),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// List a source's write keys (prefixes, never keys).
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/writekeys",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "List a source's write keys (prefixes, never keys).", body = schema::Data<schema::WriteKeyList>))
)]
async fn list_keys(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible(&api, &caller, &id, Action::ManageWriteKeys).await?;
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, &id).await?;
    Ok(data(json!({ "writeKeys": keys })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelsBody {
    labels: Vec<LabelWire>,
}

async fn set_labels(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &LabelsBody,
    replace: bool,
) -> Result<Response, ApiError> {
    let given = labels("labels", &body.labels)?;
    // Asked as an edit, so a refusal (hidden sources too) is audited; the label rule
    // itself is asked below.
    let before = visible(api, caller, id, Action::EditSource).await?;
    let mut row = before.clone();
    if replace {
        row.labels = given;
    } else {
        for label in given {
            if !row.labels.contains(&label) {
                row.labels.push(label);
            }
        }
        if row.labels.len() > MAX_LABELS {
            return Err(ApiError::field(
                "labels",
                format!("a source has at most {MAX_LABELS} labels"),
            ));
        }
    }
    allow_labels(api, caller, before.as_ref(), &row.labels).await?;
    row.updated_at = caller.now;
    let mut change = api.store.change().await?;
    sources::update(change.conn(), &row).await?;
    let keys = sources::keys_of(change.conn(), id).await?;
    let after = wire(&row, &caller.workspace.id, &keys, None);
    change
        .record(caller.draft(
            Kind::SourceLabelsUpdate,
            "source",
            id,
            Some(json!({ "labels": before.labels })),
            Some(json!({ "labels": row.labels })),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({ "labels": after["labels"], "source": after })))
}

/// Add labels to a source.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/labels",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = LabelsBody,
    responses((status = 200, description = "Add labels to a source.", body = schema::Data<schema::LabelsSet>))
)]
async fn add_labels(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<LabelsBody>,
) -> Result<Response, ApiError> {
    set_labels(&api, &caller, &id, &body, false).await
}

/// Replace a source's labels.
#[utoipa::path(
    put,
    path = "/api/v1/sources/{id}/labels",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = LabelsBody,
    responses((status = 200, description = "Replace a source's labels.", body = schema::Data<schema::LabelsSet>))
)]
async fn replace_labels(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<LabelsBody>,
) -> Result<Response, ApiError> {
    set_labels(&api, &caller, &id, &body, true).await
}

/// Destinations connected to a source that the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/connected-destinations",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id"), PageQuery),
    responses((status = 200, description = "Destinations connected to a source that the caller may see.", body = schema::Data<schema::DestinationList>))
)]
async fn connected(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    visible(&api, &caller, &id, Action::ViewSource).await?;
    let mut conn = api.store.read().await?;
    let viewer = Viewer {
        user: &caller.user,
        now: caller.now,
    };
    let rows = destinations::list_visible(
        &mut conn,
        api.store.key(),
        &caller.workspace.id,
        viewer,
        "",
        u32::MAX,
    )
    .await?;
    drop(conn);
    let mut out = Vec::new();
    for d in rows.iter().filter(|d| d.doc.sources.contains(&id)) {
        let resource = ResourceRef::Destination(DestinationRef {
            id: &d.id,
            connected: &[],
        });
        if caller.decide(Action::ViewDestination, resource).allowed {
            out.push((
                d.id.clone(),
                super::destinations::shown(&api, &caller, d).await?,
            ));
        }
    }
    Ok(page_in_memory(
        out,
        &page,
        |items, pagination| json!({"destinations": items, "pagination": pagination}),
    ))
}

/// Warehouses connected to a source: Sluice has none (always an empty page).
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/connected-warehouses",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id"), PageQuery),
    responses((status = 200, description = "Warehouses connected to a source (Sluice has none).", body = schema::Data<schema::WarehousePage>))
)]
async fn warehouses(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    visible(&api, &caller, &id, Action::ViewSource).await?;
    Ok(page_in_memory::<Value, _>(
        Vec::new(),
        &page,
        |items, pagination| json!({"warehouses": items, "pagination": pagination}),
    ))
}
