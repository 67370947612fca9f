//! `/catalog/sources` and `/catalog/destinations`: Segment's catalog API over the source
//! and destination types Sluice knows, so a client discovers the `metadataId` to create
//! one with.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::destinations::{KINDS, metadata};
use super::{Api, ApiError, Caller, PageQuery, Path, Query, data, page_in_memory};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/catalog/sources", get(sources))
        .route("/catalog/sources/{id}", get(source))
        .route("/catalog/destinations", get(destinations))
        .route("/catalog/destinations/{id}", get(destination))
}

/// Source types Sluice's Tracking API takes events from (any SDK speaking Segment's
/// protocol): id, name, category.
pub const SOURCE_KINDS: [(&str, &str, &str); 8] = [
    ("android", "Android", "Mobile"),
    ("http", "HTTP API", "Server"),
    ("ios", "iOS", "Mobile"),
    ("java", "Java", "Server"),
    ("javascript", "Javascript", "Website"),
    ("node", "Node.js", "Server"),
    ("python", "Python", "Server"),
    ("react-native", "React Native", "Mobile"),
];

fn source_metadata((id, name, category): (&str, &str, &str)) -> Value {
    json!({
        "id": id, "slug": id, "name": name,
        "description": format!("{name}: Segment's {name} library pointed at Sluice's Tracking API."),
        "logos": {"default": ""}, "options": [], "categories": [category],
        "isCloudEventSource": false,
    })
}

/// Source types.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/sources",
    tag = "Catalog",
    params(PageQuery),
    responses((status = 200, description = "Source types.", body = super::schema::Data<super::schema::SourcesCatalog>))
)]
async fn sources(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let items = SOURCE_KINDS
        .iter()
        .map(|k| (k.0.to_owned(), source_metadata(*k)))
        .collect();
    Ok(page_in_memory(
        items,
        &page,
        |items, pagination| json!({"sourcesCatalog": items, "pagination": pagination}),
    ))
}

/// One source type.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/sources/{id}",
    tag = "Catalog",
    params(("id" = String, Path, description = "Source type id")),
    responses((status = 200, description = "A source type.", body = super::schema::Data<super::schema::SourceMetadataOne>))
)]
async fn source(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let kind = SOURCE_KINDS
        .iter()
        .find(|k| k.0 == id)
        .ok_or_else(|| ApiError::missing("source type", &id))?;
    Ok(data(json!({"sourceMetadata": source_metadata(*kind)})))
}

/// Destination types.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/destinations",
    tag = "Catalog",
    params(PageQuery),
    responses((status = 200, description = "Destination types.", body = super::schema::Data<super::schema::DestinationsCatalog>))
)]
async fn destinations(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let items = KINDS
        .iter()
        .map(|(id, ..)| ((*id).to_owned(), metadata(id)))
        .collect();
    Ok(page_in_memory(
        items,
        &page,
        |items, pagination| json!({"destinationsCatalog": items, "pagination": pagination}),
    ))
}

/// One destination type.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/destinations/{id}",
    tag = "Catalog",
    params(("id" = String, Path, description = "Destination type id (webhook, file, nats)")),
    responses((status = 200, description = "A destination type.", body = super::schema::Data<super::schema::DestinationMetadataOne>))
)]
async fn destination(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    if !KINDS.iter().any(|(k, ..)| *k == id) {
        return Err(ApiError::missing("destination type", &id));
    }
    Ok(data(json!({"destinationMetadata": metadata(&id)})))
}
