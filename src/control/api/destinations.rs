//! `/destinations`: CRUD with write-only secret settings, connections to sources.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::catalog::Logos;
use super::wire::{Data, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, slug_field, success,
    text_field,
};
use crate::catalog::{DestinationDoc, FilterDoc, KindDoc, RetryDoc};
use crate::control::audit::Kind;
use crate::control::policy::{Action, DestinationRef, ResourceRef, SourceRef};
use crate::control::store::destinations::{self, DestinationRow};
use crate::control::store::sources::{self, SourceRow, Viewer};
use crate::control::store::{Change, new_id};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/destinations", get(list).post(create))
        .route("/destinations/{id}", get(read).patch(update).delete(remove))
        // Segment's Actions subscriptions and delivery summaries: refused, saying why.
        .route(
            "/destinations/{id}/subscriptions",
            get(no_subscriptions).post(no_subscriptions),
        )
        .route(
            "/destinations/{id}/subscriptions/{sub}",
            get(no_subscriptions)
                .patch(no_subscriptions)
                .delete(no_subscriptions),
        )
        .route(
            "/destinations/{id}/delivery-metrics",
            get(no_delivery_metrics),
        )
        .route("/destinations/{id}/credentials", get(credentials))
}

/// What replaces a secret on every read.
pub const REDACTED: &str = crate::catalog::REDACTED;

/// The destination's settings as anyone may read them: credentials replaced.
fn redacted_settings(kind: &KindDoc) -> Value {
    let mut value = serde_json::to_value(kind.redacted()).unwrap_or_default();
    value["settings"].take()
}

/// Settings as proposed in a body, shown as anyone may read them (the URL's host,
/// credentials replaced); `None` when they are not settings of the type `metadata_id`
/// (of any type when unknown).
pub(super) fn redacted_proposal(metadata_id: Option<&str>, settings: &Value) -> Option<Value> {
    KINDS
        .iter()
        .map(|(id, ..)| *id)
        .filter(|id| metadata_id.is_none_or(|m| m == *id))
        .find_map(|id| {
            serde_json::from_value::<KindDoc>(json!({"type": id, "settings": settings})).ok()
        })
        .map(|kind| redacted_settings(&kind))
}

fn type_name(kind: &KindDoc) -> &'static str {
    match kind {
        KindDoc::Webhook(_) => "webhook",
        KindDoc::File(_) => "file",
        KindDoc::Nats(_) => "nats",
    }
}

/// The destination types Sluice has, with what Segment's catalog says of each.
pub const KINDS: [(&str, &str, &str); 3] = [
    (
        "file",
        "File",
        "Appends each event as one NDJSON line to a file in delivery.file_dir, rotated by size.",
    ),
    (
        "nats",
        "NATS",
        "Publishes each event to a NATS subject (JetStream when asked).",
    ),
    (
        "webhook",
        "Webhook",
        "POSTs events as JSON to a URL, signed with HMAC-SHA256 when a secret is set.",
    ),
];

/// Segment's `DestinationMetadataV1`: a destination type. Sluice's types have none of
/// Segment's options, components, actions or presets: those lists are always empty.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationMetadata {
    /// Id: `webhook`, `file` or `nats` (the `metadataId` a destination is created with).
    pub id: String,
    /// Slug (= id).
    pub slug: String,
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Logos.
    pub logos: Logos,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub options: Vec<Value>,
    /// Always empty.
    pub categories: Vec<String>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub contacts: Vec<Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<Value>,
    /// Always empty.
    pub previous_names: Vec<String>,
    /// Always `PUBLIC`.
    pub status: String,
    /// Always empty.
    pub website: String,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub supported_features: serde_json::Map<String, Value>,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub supported_methods: serde_json::Map<String, Value>,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub supported_platforms: serde_json::Map<String, Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub actions: Vec<Value>,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub presets: Vec<Value>,
    /// Always `false`.
    pub partner_owned: bool,
    /// Always empty.
    pub supported_regions: Vec<String>,
    /// Always empty.
    pub region_endpoints: Vec<String>,
}

/// Segment's `DestinationMetadataV1` of a Sluice destination type.
pub fn metadata(kind: &str) -> DestinationMetadata {
    let (name, description) = KINDS
        .iter()
        .find(|(id, ..)| *id == kind)
        .map_or((kind, ""), |(_, name, description)| (*name, *description));
    DestinationMetadata {
        id: kind.to_owned(),
        slug: kind.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        logos: Logos::default(),
        options: Vec::new(),
        categories: Vec::new(),
        contacts: Vec::new(),
        components: Vec::new(),
        previous_names: Vec::new(),
        status: "PUBLIC".to_owned(),
        website: String::new(),
        supported_features: serde_json::Map::new(),
        supported_methods: serde_json::Map::new(),
        supported_platforms: serde_json::Map::new(),
        actions: Vec::new(),
        presets: Vec::new(),
        partner_owned: false,
        supported_regions: Vec::new(),
        region_endpoints: Vec::new(),
    }
}

/// A destination on the wire (Segment's `DestinationV1` plus Sluice's fields).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Whether it is delivered to.
    pub enabled: bool,
    /// Workspace.
    pub workspace_id: String,
    /// The first connected source (Segment's shape), if any.
    pub source_id: Option<String>,
    /// Every connected source.
    pub sources: Vec<String>,
    /// Its type, in Segment's catalog shape.
    pub metadata: DestinationMetadata,
    /// The type's settings, credentials replaced by a placeholder.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Which events it gets.
    pub filter: FilterDoc,
    /// How failed deliveries are retried.
    pub retry: RetryDoc,
    /// Batches in flight at most.
    pub max_in_flight: u32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

/// `{"destination": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationOne {
    /// The destination.
    pub destination: Destination,
}

/// A page of destinations.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    /// The page.
    pub destinations: Vec<Destination>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"destinationId", "settings"}`: a destination's credentials, revealed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The destination.
    pub destination_id: String,
    /// Its settings, credentials included.
    #[schema(value_type = Object)]
    pub settings: Value,
}

/// A destination as the audit log keeps it (every connected source).
pub fn wire(row: &DestinationRow, workspace: &str) -> Destination {
    let kind = type_name(&row.doc.kind);
    Destination {
        id: row.id.clone(),
        name: row.name.clone(),
        enabled: row.enabled,
        workspace_id: workspace.to_owned(),
        source_id: row.doc.sources.first().cloned(),
        sources: row.doc.sources.clone(),
        metadata: metadata(kind),
        settings: redacted_settings(&row.doc.kind),
        filter: row.doc.filter.clone(),
        retry: row.doc.retry.clone(),
        max_in_flight: row.doc.max_in_flight,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Which of `ids` the caller may see: a hidden source's id never leaves the API.
pub(super) async fn seen_sources(
    api: &Api,
    caller: &Caller,
    ids: &[String],
) -> Result<Vec<String>, ApiError> {
    let mut conn = api.store.read().await?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(source) = sources::get(&mut conn, &caller.workspace.id, id).await?
            && caller
                .decide(Action::ViewSource, ResourceRef::Source(source.as_ref()))
                .allowed
        {
            out.push(id.clone());
        }
    }
    Ok(out)
}

/// A destination as the caller sees it: [`wire`] with only the sources the caller may
/// see (the audit log keeps the whole [`wire`]).
pub async fn shown(
    api: &Api,
    caller: &Caller,
    row: &DestinationRow,
) -> Result<Destination, ApiError> {
    let ids = seen_sources(api, caller, &row.doc.sources).await?;
    Ok(Destination {
        source_id: ids.first().cloned(),
        sources: ids,
        ..wire(row, &caller.workspace.id)
    })
}

/// The sources connected to `row` that exist (a change to a destination may rest on them).
pub(super) async fn feeding(
    conn: &mut sqlx::AnyConnection,
    workspace: &str,
    row: &DestinationRow,
) -> Result<Vec<SourceRow>, ApiError> {
    let mut out = Vec::with_capacity(row.doc.sources.len());
    for source in &row.doc.sources {
        if let Some(s) = sources::get(conn, workspace, source).await? {
            out.push(s);
        }
    }
    Ok(out)
}

/// Loads a destination the caller may see and act on; hidden and missing answer alike.
pub(super) async fn visible(
    api: &Api,
    caller: &Caller,
    id: &str,
    action: Action,
) -> Result<DestinationRow, ApiError> {
    let mut conn = api.store.read().await?;
    let missing = || ApiError::missing("destination", id);
    let found = destinations::get(&mut conn, api.store.key(), &caller.workspace.id, id).await?;
    drop(conn);
    let Some(row) = found else {
        return Err(api
            .missing_target(caller, action, "destination", id, missing())
            .await);
    };
    // A change may rest on the connected sources (`full` on all of them covers it).
    let mut connected = Vec::new();
    if action != Action::ViewDestination {
        let mut conn = api.store.read().await?;
        connected = feeding(&mut conn, &caller.workspace.id, &row).await?;
    }
    let refs: Vec<SourceRef<'_>> = connected.iter().map(|s| s.as_ref()).collect();
    let seen = ResourceRef::Destination(DestinationRef { id, connected: &[] });
    let acted = ResourceRef::Destination(DestinationRef {
        id,
        connected: &refs,
    });
    api.allow_seen(
        caller,
        Action::ViewDestination,
        action,
        seen,
        acted,
        missing,
    )
    .await?;
    Ok(row)
}

/// Every source a change of connections names must exist, be visible and allow the
/// action: `Connect` (`read_write` on both ends) or `Disconnect` (`full` on the source
/// whose connection is cut: cutting another team's connection is theirs to do, and would
/// otherwise leave a destination that only the caller's sources feed, which `full` on
/// those covers).
async fn check_links(
    api: &Api,
    caller: &Caller,
    destination: &str,
    ids: &[String],
    action: Action,
) -> Result<(), ApiError> {
    let mut conn = api.store.read().await?;
    for id in ids {
        let missing = || ApiError::missing("source", id);
        let source = sources::get(&mut conn, &caller.workspace.id, id)
            .await?
            .ok_or_else(missing)?;
        let s = source.as_ref();
        api.allow(
            caller,
            Action::ViewSource,
            ResourceRef::Source(s),
            missing(),
        )
        .await?;
        let both = ResourceRef::Connection(
            s,
            DestinationRef {
                id: destination,
                connected: &[],
            },
        );
        api.allow(caller, action, both, missing()).await?;
    }
    Ok(())
}

/// A new destination as its body asks for it, checked.
pub(super) struct NewDestination {
    /// Its id (the body's, or a fresh one).
    pub(super) id: String,
    name: String,
    kind: KindDoc,
}

/// Everything creating a destination asks before it changes anything: the policy's
/// leave to create one, a valid body (id, name, type and settings, in-flight bound), and
/// the leave to connect it to its source.
pub(super) async fn check_create(
    api: &Api,
    caller: &Caller,
    body: &CreateDestination,
) -> Result<NewDestination, ApiError> {
    // Who may, before what: a body is read only for those who may create one.
    api.allow_workspace(caller, Action::CreateDestination)
        .await?;
    let id = match &body.id {
        Some(id) => slug_field("id", id)?,
        None => new_id("dst_"),
    };
    let name = match &body.name {
        Some(name) => text_field("name", name, 200)?,
        None => id.clone(),
    };
    let kind = kind(
        &body.metadata_id,
        body.settings.clone(),
        api.allow_private_destinations,
    )?;
    if body.max_in_flight == Some(0) {
        return Err(ApiError::field("maxInFlight", "must be at least 1"));
    }
    check_links(
        api,
        caller,
        &id,
        std::slice::from_ref(&body.source_id),
        Action::Connect,
    )
    .await?;
    Ok(NewDestination { id, name, kind })
}

/// A destination's update, checked: the destination as it is and as it will be, and
/// the sources it will feed when the update names them.
pub(super) struct Update {
    /// As it is.
    pub(super) before: DestinationRow,
    /// As the update leaves it.
    pub(super) after: DestinationRow,
    /// The sources it will feed, when the update names them (with those hidden from the
    /// caller kept).
    pub(super) sources: Option<Vec<String>>,
}

/// Everything an update of destination `id` asks before it changes anything: the
/// policy's leave, then a valid body (name, type's settings, in-flight bound).
/// Connections to sources hidden from the caller are not theirs to see or cut: they
/// stay, whatever the caller sends.
pub(super) async fn check_update(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &UpdateDestination,
) -> Result<Update, ApiError> {
    let (before, sources) = check_update_access(api, caller, id, body).await?;
    let mut after = before.clone();
    if let Some(name) = &body.name {
        after.name = text_field("name", name, 200)?;
        after.doc.name = Some(after.name.clone());
    }
    if let Some(enabled) = body.enabled {
        after.enabled = enabled;
        after.doc.enabled = enabled;
    }
    if let Some(settings) = &body.settings {
        after.doc.kind = kind(
            &after.metadata_id,
            settings.clone(),
            api.allow_private_destinations,
        )?;
        if let Some(field) = placeholder_sent(&before.doc.kind, &after.doc.kind) {
            return Err(ApiError::field(
                field,
                "credentials are write-only: this is the placeholder a read shows, not the value; send the value itself",
            ));
        }
    }
    if let Some(filter) = &body.filter {
        after.doc.filter = filter.clone();
    }
    if let Some(retry) = &body.retry {
        after.doc.retry = retry.clone();
    }
    if let Some(n) = body.max_in_flight {
        if n == 0 {
            return Err(ApiError::field("maxInFlight", "must be at least 1"));
        }
        after.doc.max_in_flight = n;
    }
    if let Some(sources) = &sources {
        after.doc.sources.clone_from(sources);
    }
    after.updated_at = caller.now;
    Ok(Update {
        before,
        after,
        sources,
    })
}

/// The field of `after` still holding what a read of `before` shows in place of a
/// credential (a secret's placeholder, a URL without its path, query or user info):
/// settings read, then sent back unchanged, would otherwise replace the credential with
/// its placeholder.
fn placeholder_sent(before: &KindDoc, after: &KindDoc) -> Option<&'static str> {
    let hidden_url = |old: &str, new: &str| new != old && new == crate::catalog::redacted_url(old);
    match (before, after) {
        (KindDoc::Webhook(old), KindDoc::Webhook(new)) => {
            if hidden_url(&old.url, &new.url) {
                Some("settings.url")
            } else if new.secret.as_deref() == Some(REDACTED) {
                Some("settings.secret")
            } else if new.headers.values().any(|v| v == REDACTED) {
                Some("settings.headers")
            } else {
                None
            }
        }
        (KindDoc::Nats(old), KindDoc::Nats(new)) if hidden_url(&old.url, &new.url) => {
            Some("settings.url")
        }
        _ => None,
    }
}

/// What an update of destination `id` asks of the policy.
async fn check_update_access(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: &UpdateDestination,
) -> Result<(DestinationRow, Option<Vec<String>>), ApiError> {
    let edits_config = body.name.is_some()
        || body.settings.is_some()
        || body.filter.is_some()
        || body.retry.is_some()
        || body.max_in_flight.is_some();
    let needs = if body.enabled.is_some() {
        Action::EnableDestination
    } else {
        Action::EditDestination
    };
    let before = visible(api, caller, id, needs).await?;
    if edits_config && needs != Action::EditDestination {
        let missing = ApiError::missing("destination", id);
        let resource = ResourceRef::Destination(DestinationRef { id, connected: &[] });
        api.allow(caller, Action::EditDestination, resource, missing)
            .await?;
    }
    let Some(mut sources) = body.sources.clone() else {
        return Ok((before, None));
    };
    let shown = seen_sources(api, caller, &before.doc.sources).await?;
    for hidden in before.doc.sources.iter().filter(|s| !shown.contains(s)) {
        if !sources.contains(hidden) {
            sources.push(hidden.clone());
        }
    }
    let added: Vec<String> = sources
        .iter()
        .filter(|s| !before.doc.sources.contains(s))
        .cloned()
        .collect();
    let removed: Vec<String> = before
        .doc
        .sources
        .iter()
        .filter(|s| !sources.contains(s))
        .cloned()
        .collect();
    check_links(api, caller, id, &added, Action::Connect).await?;
    check_links(api, caller, id, &removed, Action::Disconnect).await?;
    Ok((before, Some(sources)))
}

/// Refuses a change whose catalog the gateway could not install; every problem listed.
pub async fn installable(api: &Api, change: &mut Change, workspace: &str) -> Result<(), ApiError> {
    let doc =
        crate::control::store::catalog::export(change.conn(), api.store.key(), workspace).await?;
    crate::catalog::Snapshot::try_build(1, &doc).map_err(|problems| ApiError::Invalid {
        message: format!("the catalog would not be installable: {problems}"),
        field: None,
    })?;
    Ok(())
}

/// List the destinations the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/destinations",
    tag = "Destinations",
    params(PageQuery),
    responses((status = 200, description = "List the destinations the caller may see.", body = Data<DestinationList>))
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
    let rows = destinations::list_visible(
        &mut conn,
        api.store.key(),
        &caller.workspace.id,
        viewer,
        &page.after,
        page.count,
    )
    .await?;
    drop(conn);
    let mut out = Vec::new();
    let mut last = None;
    for d in &rows {
        let resource = ResourceRef::Destination(DestinationRef {
            id: &d.id,
            connected: &[],
        });
        // The cursor only ever names a row that was shown.
        if caller.decide(Action::ViewDestination, resource).allowed {
            out.push(shown(&api, &caller, d).await?);
            last = Some(d.id.as_str());
        }
    }
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |destinations, pagination| DestinationList {
            destinations,
            pagination,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateDestination {
    /// The first connected source (Segment's shape).
    pub(super) source_id: String,
    /// `webhook`, `file` or `nats`.
    #[schema(pattern = "^(webhook|file|nats)$")]
    metadata_id: String,
    #[serde(default = "yes")]
    enabled: bool,
    /// The type's settings (`GET /catalog/destinations/{metadataId}` lists them).
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    filter: Option<FilterDoc>,
    #[serde(default)]
    retry: Option<RetryDoc>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

fn yes() -> bool {
    true
}

/// Settings of a type, checked: the type's fields only, a file destination's path a bare
/// file name (written inside `delivery.file_dir`).
fn kind(metadata_id: &str, settings: Value, allow_private: bool) -> Result<KindDoc, ApiError> {
    if !KINDS.iter().any(|(id, ..)| *id == metadata_id) {
        return Err(ApiError::field(
            "metadataId",
            "Sluice destinations are of type webhook, file or nats",
        ));
    }
    let kind: KindDoc = serde_json::from_value(json!({"type": metadata_id, "settings": settings}))
        .map_err(|e| ApiError::field("settings", format!("invalid {metadata_id} settings: {e}")))?;
    match &kind {
        KindDoc::File(f) => {
            if let Some(problem) = crate::catalog::file_name_problem(&f.path) {
                return Err(ApiError::field("settings.path", problem));
            }
        }
        KindDoc::Webhook(w) => {
            if !allow_private && let Some(why) = crate::catalog::reach::refusal_by_text(&w.url) {
                return Err(ApiError::field("settings.url", why));
            }
            for (name, value) in &w.headers {
                let field = format!("settings.headers.{name}");
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(ApiError::field(&field, "not an HTTP header name"));
                }
                if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                    return Err(ApiError::field(
                        &field,
                        "header values must not contain control characters (CR, LF, …)",
                    ));
                }
            }
        }
        KindDoc::Nats(n) => {
            // A NATS server is reached from the delivery nodes' network as a webhook
            // is: the same guard (the default, 127.0.0.1, needs the same setting).
            if !allow_private && let Some(why) = crate::catalog::reach::nats_refusal_by_text(&n.url)
            {
                return Err(ApiError::field("settings.url", why));
            }
        }
    }
    Ok(kind)
}

/// Create a destination connected to a source.
#[utoipa::path(
    post,
    path = "/api/v1/destinations",
    tag = "Destinations",
    request_body = CreateDestination,
    responses((status = 200, description = "Create a destination connected to a source.", body = Data<DestinationOne>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateDestination>,
) -> Result<Response, ApiError> {
    let NewDestination { id, name, kind } = check_create(&api, &caller, &body).await?;
    let sources = vec![body.source_id];
    let row = DestinationRow {
        id: id.clone(),
        name: name.clone(),
        metadata_id: body.metadata_id.clone(),
        enabled: body.enabled,
        doc: DestinationDoc {
            id: id.clone(),
            name: Some(name),
            enabled: body.enabled,
            sources,
            filter: body.filter.unwrap_or_default(),
            retry: body.retry.unwrap_or_default(),
            max_in_flight: body.max_in_flight.unwrap_or(1),
            rate_limit: None,
            function: None,
            consent_categories: Vec::new(),
            kind,
        },
        created_at: caller.now,
        updated_at: caller.now,
    };
    let mut change = api.store.change().await?;
    destinations::insert(change.conn(), api.store.key(), &caller.workspace.id, &row).await?;
    installable(&api, &mut change, &caller.workspace.id).await?;
    let after = wire(&row, &caller.workspace.id);
    change
        .record(caller.draft(
            Kind::DestinationCreate,
            "destination",
            &id,
            None,
            Some(document(&after)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(DestinationOne {
        destination: shown(&api, &caller, &row).await?,
    }))
}

/// Get a destination (credentials redacted).
#[utoipa::path(
    get,
    path = "/api/v1/destinations/{id}",
    tag = "Destinations",
    params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, description = "Get a destination (credentials redacted).", body = Data<DestinationOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = visible(&api, &caller, &id, Action::ViewDestination).await?;
    Ok(data(DestinationOne {
        destination: shown(&api, &caller, &row).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UpdateDestination {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// Replaces the settings (secrets included: they are write-only).
    #[serde(default)]
    settings: Option<Value>,
    /// Replaces the connected sources.
    #[serde(default)]
    sources: Option<Vec<String>>,
    #[serde(default)]
    filter: Option<FilterDoc>,
    #[serde(default)]
    retry: Option<RetryDoc>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

/// Update a destination: settings (write-only secrets), connections, filter, retry.
#[utoipa::path(
    patch,
    path = "/api/v1/destinations/{id}",
    tag = "Destinations",
    params(("id" = String, Path, description = "Destination id")),
    request_body = UpdateDestination,
    responses((status = 200, description = "Update a destination: settings (write-only secrets), connections, filter, retry.", body = Data<DestinationOne>))
)]
async fn update(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UpdateDestination>,
) -> Result<Response, ApiError> {
    let Update {
        before, after: row, ..
    } = check_update(&api, &caller, &id, &body).await?;
    let mut change = api.store.change().await?;
    destinations::update(change.conn(), api.store.key(), &row).await?;
    installable(&api, &mut change, &caller.workspace.id).await?;
    let after = wire(&row, &caller.workspace.id);
    let was = wire(&before, &caller.workspace.id);
    change
        .record(caller.draft(
            Kind::DestinationUpdate,
            "destination",
            &id,
            Some(document(&was)?),
            Some(document(&after)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(DestinationOne {
        destination: shown(&api, &caller, &row).await?,
    }))
}

/// Delete a destination.
#[utoipa::path(
    delete,
    path = "/api/v1/destinations/{id}",
    tag = "Destinations",
    params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, description = "Delete a destination.", body = Data<Status>))
)]
async fn remove(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let before = visible(&api, &caller, &id, Action::DeleteDestination).await?;
    let mut change = api.store.change().await?;
    destinations::delete(change.conn(), &id).await?;
    let was = wire(&before, &caller.workspace.id);
    change
        .record(caller.draft(
            Kind::DestinationDelete,
            "destination",
            &id,
            Some(document(&was)?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// Segment's Actions subscriptions: Sluice destinations have none.
async fn no_subscriptions() -> ApiError {
    ApiError::Unsupported(
        "Sluice destinations have no Actions subscriptions: a destination gets every event of its connected sources that its filter passes",
    )
}

/// Segment's delivery summary: Sluice's delivery figures are Prometheus metrics.
async fn no_delivery_metrics() -> ApiError {
    ApiError::Unsupported(
        "delivery figures are on the admin listener's /metrics (sluice_delivery_* by destination), not in this API",
    )
}

/// Reveal a destination's credentials (its settings unredacted). Takes `read_write` on the
/// destination (the reference's "view credentials"); every reveal is an audit event.
/// Lists and reads never carry them. With a session cookie, the request must carry the
/// session's `X-CSRF-Token`: a link from elsewhere reveals nothing in anyone's name.
#[utoipa::path(
    get,
    path = "/api/v1/destinations/{id}/credentials",
    tag = "Destinations",
    params(("id" = String, Path, description = "Destination id")),
    responses((status = 200, description = "The destination's settings with its credentials.", body = Data<Credentials>))
)]
async fn credentials(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let super::Via::Session(session) = &caller.via
        && !crate::control::identity::session::echoes_token(&headers, session)
    {
        return Err(ApiError::Forbidden(super::Forbidden::Csrf(
            "revealing credentials with a session cookie needs its X-CSRF-Token",
        )));
    }
    let row = visible(&api, &caller, &id, Action::ViewDestinationSecrets).await?;
    api.store
        .record_alone(caller.draft(
            Kind::DestinationCredentialsReveal,
            "destination",
            &id,
            None,
            None,
        ))
        .await?;
    let settings = serde_json::to_value(&row.doc.kind)
        .map(|mut v| v["settings"].take())
        .unwrap_or_default();
    let mut response = data(Credentials {
        destination_id: id,
        settings,
    });
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
