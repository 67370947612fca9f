//! `/sources`: CRUD, labels, write keys, connected destinations.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::catalog::{Logos, SourceMetadata};
use super::destinations::DestinationList;
use super::wire::{Data, Label, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_in_memory, page_of, slug_field,
    success, text_field,
};
use crate::catalog::KeyDigest;
use crate::control::audit::Kind;
use crate::control::policy::{Action, DestinationRef, LabelChange, ResourceRef, SourceRef};
use crate::control::store::sources::{self, SourceRow, Viewer, WriteKeyRow};
use crate::control::store::{catalog::enforcement_name, destinations, grants, plans};
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

/// A source on the wire (Segment's `SourceV1` plus Sluice's fields).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Id (= slug; the data plane's source id).
    pub id: String,
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Workspace.
    pub workspace_id: String,
    /// Disabled sources' keys get 401.
    pub enabled: bool,
    /// Each live key's id (what `DELETE /sources/{id}/writekey/{key}` takes: Sluice keeps
    /// only digests), and a new key's plaintext in the answer that creates it only.
    pub write_keys: Vec<String>,
    /// The source type, in Segment's catalog shape.
    pub metadata: SourceMetadata,
    /// Always `{}`: Sluice sources have no settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, Value>,
    /// Labels.
    pub labels: Vec<Label>,
    /// The tracking plan its events are checked against.
    pub tracking_plan_id: Option<String>,
    /// `off`, `warn` or `block`.
    pub enforcement: String,
    /// Its own rate limit, if any.
    pub rate_limit: Option<RateLimit>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

/// A source's rate limit.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Events per second.
    pub requests_per_second: u32,
    /// Burst above the rate (null: the gateway's default).
    pub burst: Option<u32>,
}

/// `{"source": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOne {
    /// The source.
    pub source: Source,
}

/// `{"source": …, "trackingPlanId": …}`: a source read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRead {
    /// The source.
    pub source: Source,
    /// Its tracking plan (as in `source.trackingPlanId`).
    pub tracking_plan_id: Option<String>,
}

/// A page of sources.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    /// The page.
    pub sources: Vec<Source>,
    /// Paging.
    pub pagination: Pagination,
}

/// A new write key, its plaintext shown in this answer only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewWriteKey {
    /// Key id (`wk_…`).
    pub id: String,
    /// The key.
    pub key: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The answer to a new write key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKeyCreated {
    /// The source, `writeKeys` holding the new key's plaintext.
    pub source: Source,
    /// The new key.
    pub write_key: NewWriteKey,
}

/// A stored write key (its prefix, never the key).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKey {
    /// Id (`wk_…`).
    pub id: String,
    /// Source.
    pub source_id: String,
    /// The key's first characters.
    pub display: String,
    /// Who made it (user id, or `system`).
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// End of a rotation overlap: refused from then on.
    pub expires_at: Option<DateTime<Utc>>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&WriteKeyRow> for WriteKey {
    fn from(row: &WriteKeyRow) -> Self {
        Self {
            id: row.id.clone(),
            source_id: row.source_id.clone(),
            display: row.display.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// `{"writeKeys": […]}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteKeyList {
    /// Every key, revoked ones too.
    pub write_keys: Vec<WriteKey>,
}

/// `{"labels": […], "source": …}`: a source's labels after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelsSet {
    /// The source's labels.
    pub labels: Vec<Label>,
    /// The source.
    pub source: Source,
}

/// Warehouses connected to a source: Sluice has none.
#[derive(Debug, Serialize, ToSchema)]
pub struct WarehouseList {
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub warehouses: Vec<Value>,
    /// Paging.
    pub pagination: Pagination,
}

/// A source as the API shows it; `new_key`, a new key's plaintext, is added to its
/// `writeKeys` (in the answer that creates it only).
pub fn wire(
    source: &SourceRow,
    workspace: &str,
    keys: &[WriteKeyRow],
    new_key: Option<&str>,
) -> Source {
    let mut write_keys: Vec<String> = keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.id.clone())
        .collect();
    if let Some(plain) = new_key {
        write_keys.push(plain.to_owned());
    }
    Source {
        id: source.id.clone(),
        slug: source.id.clone(),
        name: source.name.clone(),
        workspace_id: workspace.to_owned(),
        enabled: source.enabled,
        write_keys,
        metadata: SourceMetadata {
            id: source.metadata_id.clone(),
            slug: source.metadata_id.clone(),
            name: source.metadata_id.clone(),
            categories: Vec::new(),
            description: String::new(),
            logos: Logos::default(),
            options: Vec::new(),
            is_deprecated: Some(false),
            is_cloud_event_source: false,
        },
        settings: serde_json::Map::new(),
        labels: source
            .labels
            .iter()
            .map(|(k, v)| Label::new(k, v))
            .collect(),
        tracking_plan_id: source.tracking_plan_id.clone(),
        enforcement: source.enforcement.clone(),
        rate_limit: source.rate_per_second.map(|rps| RateLimit {
            requests_per_second: rps,
            burst: source.rate_burst,
        }),
        created_at: source.created_at,
        updated_at: source.updated_at,
    }
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
    responses((status = 200, description = "List the sources the caller may see.", body = Data<SourceList>))
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
        |sources, pagination| SourceList {
            sources,
            pagination,
        },
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
    /// Sluice sources have no settings: `{}` or left out.
    #[serde(default)]
    #[schema(value_type = Option<NoSettings>)]
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
    /// Free text, at most [`MAX_LABEL_DESCRIPTION`] characters (stored by the labels
    /// API; accepted and not stored per source).
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Longest label description, in characters.
pub const MAX_LABEL_DESCRIPTION: usize = 500;

impl LabelWire {
    /// The description, checked against [`MAX_LABEL_DESCRIPTION`] (empty when left out).
    pub fn description(&self, field: &str) -> Result<String, ApiError> {
        let text = self.description.clone().unwrap_or_default();
        if text.chars().count() > MAX_LABEL_DESCRIPTION {
            return Err(ApiError::field(
                field,
                format!("at most {MAX_LABEL_DESCRIPTION} characters"),
            ));
        }
        Ok(text)
    }
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
            l.description(&format!("{field}[{i}].description"))?;
            Ok((
                slug_field(&format!("{field}[{i}].key"), &l.key)?,
                slug_field(&format!("{field}[{i}].value"), &l.value)?,
            ))
        })
        .collect()
}

/// `{}`: Sluice sources have no settings (the document states it; the server refuses
/// anything else).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

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
    responses((status = 200, description = "Create a source.", body = Data<SourceOne>))
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
        without_consent: crate::consent::WithoutConsent::Deliver,
        pii: Vec::new(),
        labels,
        created_at: caller.now,
        updated_at: caller.now,
    };
    let mut change = api.store.change().await?;
    sources::insert(change.conn(), &caller.workspace.id, &row).await?;
    let after = wire(&row, &caller.workspace.id, &[], None);
    change
        .record(caller.draft(
            Kind::SourceCreate,
            "source",
            &id,
            None,
            Some(document(&after)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(SourceOne { source: after }))
}

/// Get a source.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Get a source.", body = Data<SourceRead>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let source = visible(&api, &caller, &id, Action::ViewSource).await?;
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, &id).await?;
    Ok(data(SourceRead {
        tracking_plan_id: source.tracking_plan_id.clone(),
        source: wire(&source, &caller.workspace.id, &keys, None),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UpdateSource {
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 200
    )]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    slug: Option<String>,
    /// Sluice sources have no settings: `{}` or left out.
    #[serde(default)]
    #[schema(value_type = Option<NoSettings>)]
    settings: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    tracking_plan_id: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(off|warn|block)$")]
    enforcement: Option<Enforcement>,
    #[serde(default)]
    #[schema(value_type = Option<RateWire>)]
    rate_limit: Option<Option<RateWire>>,
}

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RateWire {
    #[schema(minimum = 1)]
    requests_per_second: u32,
    #[serde(default)]
    #[schema(minimum = 1)]
    burst: Option<u32>,
}

/// Everything an update of source `id` asks of the policy and of its body before it
/// changes anything: the source as it is and as it would be.
pub(super) async fn check_update(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &UpdateSource,
) -> Result<(SourceRow, SourceRow), ApiError> {
    let before = visible(api, caller, id, Action::EditSource).await?;
    if body.slug.as_ref().is_some_and(|s| *s != id) {
        return Err(ApiError::FieldConflict {
            field: "slug",
            message: "a source's slug is its id in stored events and cannot change".into(),
        });
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
        // A burst of 0 would make the catalog uninstallable: every later change would
        // wait behind it on every gateway.
        if rate.is_some_and(|r| r.burst == Some(0)) {
            return Err(ApiError::field("rateLimit.burst", "must be at least 1"));
        }
        row.rate_per_second = rate.map(|r| r.requests_per_second);
        row.rate_burst = rate.and_then(|r| r.burst);
    }
    if let Some(plan) = &body.tracking_plan_id {
        if let Some(plan) = plan {
            let mut conn = api.store.read().await?;
            plans::get(&mut conn, &caller.workspace.id, plan)
                .await?
                .ok_or_else(|| ApiError::missing("tracking plan", plan))?;
        }
        row.tracking_plan_id.clone_from(plan);
    }
    Ok((before, row))
}

/// Update a source.
#[utoipa::path(
    patch,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = UpdateSource,
    responses((status = 200, description = "Update a source.", body = Data<SourceOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateSource>,
) -> Result<Response, ApiError> {
    let (before, mut row) = check_update(&api, &caller, &id, &body).await?;
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
            Some(document(&was)?),
            Some(document(&after)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(SourceOne { source: after }))
}

/// Everything deleting source `id` asks before it changes anything: the caller may
/// delete it, and no other source forwards events into it (`409`, naming only the
/// forwarding sources the caller may see: the others are changed by someone who may).
pub(super) async fn check_delete(
    api: &Api,
    caller: &Caller,
    id: &str,
) -> Result<SourceRow, ApiError> {
    let source = visible(api, caller, id, Action::DeleteSource).await?;
    let mut conn = api.store.read().await?;
    let all = sources::all(&mut conn, &caller.workspace.id).await?;
    drop(conn);
    let feeding: Vec<&SourceRow> = all
        .iter()
        .filter(|s| {
            s.id != id
                && super::source_settings::forwarding_targets(s)
                    .iter()
                    .any(|t| t == id)
        })
        .collect();
    if feeding.is_empty() {
        return Ok(source);
    }
    let named: Vec<&str> = feeding
        .iter()
        .filter(|s| {
            caller
                .decide(Action::ViewSource, ResourceRef::Source(s.as_ref()))
                .allowed
        })
        .map(|s| s.id.as_str())
        .collect();
    let by = if named.is_empty() {
        "other sources".to_owned()
    } else {
        format!("sources including {}", named.join(", "))
    };
    Err(ApiError::Conflict(format!(
        "source {id} receives the events forwarded by {by}: change their forwarding first"
    )))
}

/// Delete a source with its keys, labels, connections and grants.
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "Delete a source with its keys, labels, connections and grants.", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let before = check_delete(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    let keys = sources::keys_of(change.conn(), &id).await?;
    sources::delete(change.conn(), &id).await?;
    // A source another one forwards events into cannot go (every gateway would keep its
    // last catalog, deaf to later changes): the forwarding is changed first.
    super::destinations::installable(&api, &mut change, &caller.workspace.id).await?;
    let was = wire(&before, &caller.workspace.id, &keys, None);
    change
        .record(caller.draft(
            Kind::SourceDelete,
            "source",
            &id,
            Some(document(&was)?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AddKey {
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// Everything a new write key for source `id` asks before it is made: the caller may
/// manage the source's keys, and an expiry is in the future.
pub(super) async fn check_add_key(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &AddKey,
) -> Result<SourceRow, ApiError> {
    let source = visible(api, caller, id, Action::ManageWriteKeys).await?;
    if body.expires_at.is_some_and(|at| at <= caller.now) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    Ok(source)
}

/// Makes a new write key: 32 random base62 characters, shown in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/writekey",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = AddKey,
    responses((status = 200, description = "Create a write key (shown in this answer only).", body = Data<WriteKeyCreated>))
)]
async fn add_key(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<AddKey>,
) -> Result<Response, ApiError> {
    let source = check_add_key(&api, &caller, &id, &body).await?;
    let plain = token::random_base62(32).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a write key");
        ApiError::Internal
    })?;
    let digest = KeyDigest::of(&plain);
    let display = format!("{}…", &plain[..4]);
    let mut change = api.store.change().await?;
    let key = sources::add_key(
        change.conn(),
        &id,
        digest,
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
    Ok(data(WriteKeyCreated {
        source: wire(&source, &caller.workspace.id, &shown, Some(&plain)),
        write_key: NewWriteKey {
            id: key.id,
            key: plain,
            expires_at: key.expires_at,
        },
    }))
}

/// Revokes a key named by its plaintext (Segment's path) or its id (`wk_…`).
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}/writekey/{key}",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id"), ("key" = String, Path, description = "The key itself, or its id (wk_…)")),
    responses((status = 200, description = "Revoke a write key.", body = Data<Status>))
)]
async fn remove_key(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, found) = check_remove_key(&api, &caller, &id, &key).await?;
    let mut change = api.store.change().await?;
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

/// Everything revoking write key `key` (its id or the key itself) of source `id` asks
/// before it changes anything: the caller may manage the source's keys, and the key is
/// the source's.
pub(super) async fn check_remove_key(
    api: &Api,
    caller: &Caller,
    id: &str,
    key: &str,
) -> Result<(SourceRow, WriteKeyRow), ApiError> {
    let source = visible(api, caller, id, Action::ManageWriteKeys).await?;
    let digest = KeyDigest::of(key);
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, id).await?;
    let found = keys
        .into_iter()
        .find(|k| k.id == key || k.digest.matches(&digest))
        .ok_or_else(|| ApiError::missing("write key", "given"))?;
    Ok((source, found))
}

/// List a source's write keys (prefixes, never keys).
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/writekeys",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    responses((status = 200, description = "List a source's write keys (prefixes, never keys).", body = Data<WriteKeyList>))
)]
async fn list_keys(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    visible(&api, &caller, &id, Action::ManageWriteKeys).await?;
    let mut conn = api.store.read().await?;
    let keys = sources::keys_of(&mut conn, &id).await?;
    Ok(data(WriteKeyList {
        write_keys: keys.iter().map(WriteKey::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LabelsBody {
    labels: Vec<LabelWire>,
}

async fn set_labels(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &LabelsBody,
    replace: bool,
) -> Result<Response, ApiError> {
    let (before, mut row) = check_labels(api, caller, id, body, replace).await?;
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
    Ok(data(LabelsSet {
        labels: after.labels.clone(),
        source: after,
    }))
}

/// Everything a change of source `id`'s labels (added, or all `replace`d) asks of the
/// policy and of its body before it changes anything: the source as it is and as it
/// would be.
pub(super) async fn check_labels(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &LabelsBody,
    replace: bool,
) -> Result<(SourceRow, SourceRow), ApiError> {
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
    Ok((before, row))
}

/// Add labels to a source.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{id}/labels",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id")),
    request_body = LabelsBody,
    responses((status = 200, description = "Add labels to a source.", body = Data<LabelsSet>))
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
    responses((status = 200, description = "Replace a source's labels.", body = Data<LabelsSet>))
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
    responses((status = 200, description = "Destinations connected to a source that the caller may see.", body = Data<DestinationList>))
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
    Ok(page_in_memory(out, &page, |destinations, pagination| {
        DestinationList {
            destinations,
            pagination,
        }
    }))
}

/// Warehouses connected to a source: Sluice has none (always an empty page).
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/connected-warehouses",
    tag = "Sources",
    params(("id" = String, Path, description = "Source id"), PageQuery),
    responses((status = 200, description = "Warehouses connected to a source (Sluice has none).", body = Data<WarehouseList>))
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
        |warehouses, pagination| WarehouseList {
            warehouses,
            pagination,
        },
    ))
}
