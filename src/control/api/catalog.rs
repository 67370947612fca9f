//! `/catalog/sources` and `/catalog/destinations`: Segment's catalog API over the source
//! and destination types Sluice knows, so a client discovers the `metadataId` to create
//! one with.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::destinations::{DestinationMetadata, KINDS, metadata};
use super::wire::{Data, Pagination};
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

/// A type's logos (Sluice has none: `{"default": ""}`).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Logos {
    /// The logo's URL (empty).
    pub default: String,
}

/// Segment's `SourceMetadataV1`: a source type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceMetadata {
    /// Id (the `metadataId` a source is created with).
    pub id: String,
    /// Slug (= id).
    pub slug: String,
    /// Name.
    pub name: String,
    /// Categories (`Website`, `Mobile`, `Server`; none on a source's own `metadata`).
    pub categories: Vec<String>,
    /// What it is.
    pub description: String,
    /// Logos.
    pub logos: Logos,
    /// Settings the type takes: none (always empty).
    #[schema(value_type = Vec<Object>)]
    pub options: Vec<Value>,
    /// Always `false` (on a source's own `metadata` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_deprecated: Option<bool>,
    /// Always `false`.
    pub is_cloud_event_source: bool,
}

fn source_metadata((id, name, category): (&str, &str, &str)) -> SourceMetadata {
    SourceMetadata {
        id: id.to_owned(),
        slug: id.to_owned(),
        name: name.to_owned(),
        categories: vec![category.to_owned()],
        description: format!("{name}: Segment's {name} library pointed at Sluice's Tracking API."),
        logos: Logos::default(),
        options: Vec::new(),
        is_deprecated: None,
        is_cloud_event_source: false,
    }
}

/// `{"sourcesCatalog": […], "pagination"}`: source types.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourcesCatalog {
    /// The page.
    pub sources_catalog: Vec<SourceMetadata>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"sourceMetadata": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceMetadataOne {
    /// The source type.
    pub source_metadata: SourceMetadata,
}

/// `{"destinationsCatalog": […], "pagination"}`: destination types.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationsCatalog {
    /// The page.
    pub destinations_catalog: Vec<DestinationMetadata>,
    /// Paging.
    pub pagination: Pagination,
}

/// `{"destinationMetadata": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationMetadataOne {
    /// The destination type.
    pub destination_metadata: DestinationMetadata,
}

/// Source types.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/sources",
    tag = "Catalog",
    params(PageQuery),
    responses((status = 200, description = "Source types.", body = Data<SourcesCatalog>))
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
        |sources_catalog, pagination| SourcesCatalog {
            sources_catalog,
            pagination,
        },
    ))
}

/// One source type.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/sources/{id}",
    tag = "Catalog",
    params(("id" = String, Path, description = "Source type id")),
    responses((status = 200, description = "A source type.", body = Data<SourceMetadataOne>))
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
    Ok(data(SourceMetadataOne {
        source_metadata: source_metadata(*kind),
    }))
}

/// Destination types.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/destinations",
    tag = "Catalog",
    params(PageQuery),
    responses((status = 200, description = "Destination types.", body = Data<DestinationsCatalog>))
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
        |destinations_catalog, pagination| DestinationsCatalog {
            destinations_catalog,
            pagination,
        },
    ))
}

/// One destination type.
#[utoipa::path(
    get,
    path = "/api/v1/catalog/destinations/{id}",
    tag = "Catalog",
    params(("id" = String, Path, description = "Destination type id (webhook, file, nats)")),
    responses((status = 200, description = "A destination type.", body = Data<DestinationMetadataOne>))
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
    Ok(data(DestinationMetadataOne {
        destination_metadata: metadata(&id),
    }))
}
