//! The feed of remote gateways: `GET /internal/v1/catalog?after=<revision>` (long poll,
//! node token with `catalog:read`) and `GET /api/v1/gateways` (who applied what).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::schema;
use super::{Api, ApiError, Caller, Query, data};
use crate::control::policy::Action;
use crate::control::store::gateways;

/// Longest a catalog request waits for a change before answering 304.
pub const LONG_POLL: Duration = Duration::from_secs(25);

/// `/internal/v1/catalog` (mounted at the root).
pub fn internal_routes() -> Router<Arc<Api>> {
    Router::new().route("/internal/v1/catalog", get(catalog))
}

/// `/gateways` (mounted under `/api/v1`).
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/gateways", get(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CatalogQuery {
    /// The revision the gateway has applied (0: none).
    #[serde(default)]
    after: u64,
    /// The gateway's name, for `/api/v1/gateways`.
    #[serde(default)]
    gateway: Option<String>,
    /// Seconds to wait for a change (0 to 25, default 25).
    #[serde(default)]
    wait: Option<u64>,
}

/// Answers the catalog as soon as its revision is past `after`; else 304 after the wait.
#[utoipa::path(
    get,
    path = "/internal/v1/catalog",
    tag = "Catalog",
    params(CatalogQuery),
    responses((status = 200, description = "The catalog for a remote gateway (long poll; 304 when unchanged).", body = schema::Data<schema::CatalogFeed>), (status = 304, description = "Nothing newer before the wait ended"))
)]
async fn catalog(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<CatalogQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(LONG_POLL.as_secs())).min(LONG_POLL);
    if let Some(name) = &q.gateway
        && (name.is_empty() || name.len() > 100 || name.chars().any(char::is_control))
    {
        return Err(ApiError::field("gateway", "1 to 100 printable characters"));
    }
    api.allow_workspace(&caller, Action::ReadCatalog).await?;
    if let Some(name) = &q.gateway {
        let mut conn = api.store.read().await?;
        gateways::report(
            &mut conn,
            name,
            q.after,
            caller.ip.as_deref().unwrap_or_default(),
            caller.now,
        )
        .await?;
    }
    let mut wake = api.published.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let latest = wake.borrow_and_update().clone();
        if let Some(published) = latest.filter(|p| p.revision > q.after) {
            return Ok(data(
                json!({"revision": published.revision, "catalog": published.doc.hashed()}),
            ));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || api.closing.is_cancelled() {
            let revision = api.store.catalog_revision().await?;
            return Ok((
                StatusCode::NOT_MODIFIED,
                [("x-sluice-revision", revision.to_string())],
            )
                .into_response());
        }
        tokio::select! {
            // The publisher exports once per catalog revision, for every waiting gateway.
            _ = tokio::time::timeout(deadline - now, wake.changed()) => {}
            () = api.closing.cancelled() => {}
        }
    }
}

/// Gateways and the revision each applied.
#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "Catalog",
    responses((status = 200, description = "Gateways and the revision each applied.", body = schema::Data<schema::GatewayList>))
)]
async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = gateways::list(&mut conn).await?;
    let revision = api.store.catalog_revision().await?;
    Ok(data(json!({"gateways": rows, "revision": revision})))
}
