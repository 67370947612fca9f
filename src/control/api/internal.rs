//! The feed of remote gateways and delivery nodes: `GET /internal/v1/catalog?after=<revision>`
//! (long poll, with a node credential: `slc_node_…`, never a person's token) and
//! `GET /api/v1/gateways` (who applied what). A gateway node's catalog carries no
//! destination credentials; a delivery node's does ([`policy::node_may`]). Gateway nodes
//! report their usage counts to `POST /internal/v1/usage` ([`crate::usage`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::wire::Data;
use crate::catalog::Document;

use super::{Api, ApiError, Body, Caller, Forbidden, Query, Unauthenticated, bearer, data};
use crate::control::policy::{self, Action};
use crate::control::store::gateways::{self, GatewayRow};
use crate::control::store::nodes::{self, NodeRow};
use crate::control::token;
use crate::control::usage;
use crate::functions::errors::Reported;
use crate::usage::Report;

/// Longest a catalog request waits for a change before answering 304.
pub const LONG_POLL: Duration = Duration::from_secs(25);

/// `/internal/v1/catalog` (mounted at the root).
pub fn internal_routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/internal/v1/catalog", get(catalog))
        .route("/internal/v1/usage", post(report_usage))
        .route("/internal/v1/function-errors", post(report_function_errors))
        .route("/internal/v1/suppressions", get(suppressions))
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SuppressionsQuery {
    /// The last change the gateway has applied (0: none).
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a change when there is none (0 to 25, default 25).
    #[serde(default)]
    wait: Option<u64>,
}

/// A page of the suppression list's changes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionChanges {
    /// Which list this is (random per store: another value than the one a gateway
    /// followed means another store, and it starts over).
    pub epoch: String,
    /// The last position the list has given out (below a gateway's `after`: the store
    /// was restored from an older state, and it starts over).
    pub head: u64,
    /// Up to 10,000 changes past `after`, in order (from `after` 0, suppressions in force
    /// only). A full page means more are waiting.
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<crate::suppression::Change>,
}

/// The changes of the suppression list past `after`, for remote gateways (long poll:
/// with nothing new, answers when something changes or the wait ends).
#[utoipa::path(
    get,
    path = "/internal/v1/suppressions",
    tag = "Catalog",
    params(SuppressionsQuery),
    responses((status = 200, description = "Changes past `after` (empty when the wait ended with none).", body = Data<SuppressionChanges>))
)]
async fn suppressions(
    State(api): State<Arc<Api>>,
    node: Node,
    Query(q): Query<SuppressionsQuery>,
) -> Result<Response, ApiError> {
    if !policy::node_may(node.row.role, Action::ReadSuppressions) {
        return Err(ApiError::Forbidden(Forbidden::NodeRole(
            Action::ReadSuppressions,
        )));
    }
    let wait = Duration::from_secs(q.wait.unwrap_or(LONG_POLL.as_secs())).min(LONG_POLL);
    let page =
        crate::control::suppression::changes_waiting(&api.store, q.after, wait, &api.closing)
            .await?;
    Ok(data(SuppressionChanges {
        epoch: page.epoch,
        head: page.head,
        changes: page.changes,
    }))
}

/// The catalog for a remote gateway or delivery node.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogFeed {
    /// Its revision (the next request's `after`).
    pub revision: u64,
    /// The catalog document: write keys as digests; destination credentials for a
    /// delivery node only.
    #[schema(value_type = Object)]
    pub catalog: Document,
}

/// A gateway's last report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// The name it gives (`--node-name`, default its host name).
    pub id: String,
    /// The catalog revision it has applied.
    pub revision: u64,
    /// The address it called from.
    pub address: String,
    /// When it last asked.
    pub seen_at: DateTime<Utc>,
}

impl From<GatewayRow> for Gateway {
    fn from(row: GatewayRow) -> Self {
        Self {
            id: row.id,
            revision: row.revision,
            address: row.address,
            seen_at: row.seen_at,
        }
    }
}

/// `{"gateways": […], "revision": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayList {
    /// Every gateway that reported.
    pub gateways: Vec<Gateway>,
    /// The control plane's catalog revision.
    pub revision: u64,
}

/// Answers the catalog as soon as its revision is past `after`; else 304 after the wait.
#[utoipa::path(
    get,
    path = "/internal/v1/catalog",
    tag = "Catalog",
    params(CatalogQuery),
    responses((status = 200, description = "The catalog for a remote gateway (long poll; 304 when unchanged).", body = Data<CatalogFeed>), (status = 304, description = "Nothing newer before the wait ended"))
)]
async fn catalog(
    State(api): State<Arc<Api>>,
    node: Node,
    Query(q): Query<CatalogQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(q.wait.unwrap_or(LONG_POLL.as_secs())).min(LONG_POLL);
    if let Some(name) = &q.gateway
        && (name.is_empty() || name.len() > 100 || name.chars().any(char::is_control))
    {
        return Err(ApiError::field("gateway", "1 to 100 printable characters"));
    }
    if !policy::node_may(node.row.role, Action::ReadCatalog) {
        return Err(ApiError::Forbidden(Forbidden::NodeRole(
            Action::ReadCatalog,
        )));
    }
    let secrets = policy::node_may(node.row.role, Action::ViewDestinationSecrets);
    if let Some(name) = &q.gateway {
        let mut conn = api.store.read().await?;
        gateways::report(
            &mut conn,
            name,
            q.after,
            node.ip.as_deref().unwrap_or_default(),
            Utc::now(),
        )
        .await?;
    }
    let mut wake = api.published.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let latest = wake.borrow_and_update().clone();
        if let Some(published) = latest.filter(|p| p.revision > q.after) {
            let catalog = if secrets {
                // Delivery nodes do not accept events: PII rules and their salt stay
                // with the gateways.
                published.doc.hashed().without_pii()
            } else {
                published.doc.without_credentials()
            };
            return Ok(data(CatalogFeed {
                revision: published.revision,
                catalog,
            }));
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    /// The gateway's name (`--node-name`, default its host name).
    gateway: String,
}

/// Most sources one usage report may carry (gateways send at most
/// [`crate::usage::SOURCES_PER_REPORT`]).
const MAX_REPORTED_SOURCES: usize = 5_000;

/// Books a gateway's usage report (once per `instance` and `seq`) and answers the
/// month's standing: events accepted per quota pool, over every gateway.
#[utoipa::path(
    post,
    path = "/internal/v1/usage",
    tag = "Catalog",
    params(UsageQuery),
    request_body(content = Object, description = "`{instance, seq, sources: {<id>: {accepted, refused, violating}}}`"),
    responses((status = 200, description = "The month's standing: `{period, resetsAt, used: {<pool>: events}}`.", body = Object))
)]
async fn report_usage(
    State(api): State<Arc<Api>>,
    node: Node,
    Query(q): Query<UsageQuery>,
    Body(report): Body<Report>,
) -> Result<Response, ApiError> {
    if !policy::node_may(node.row.role, Action::ReportUsage) {
        return Err(ApiError::Forbidden(Forbidden::NodeRole(
            Action::ReportUsage,
        )));
    }
    if q.gateway.is_empty() || q.gateway.len() > 100 || q.gateway.chars().any(char::is_control) {
        return Err(ApiError::field("gateway", "1 to 100 printable characters"));
    }
    if report.instance.is_empty() || report.instance.len() > 100 {
        return Err(ApiError::field("instance", "1 to 100 characters"));
    }
    if report.sources.len() > MAX_REPORTED_SOURCES {
        return Err(ApiError::field(
            "sources",
            format!("at most {MAX_REPORTED_SOURCES} sources a report"),
        ));
    }
    if let Some((id, _)) = report
        .sources
        .iter()
        .find(|(_, c)| c.most() > crate::usage::MAX_COUNT)
    {
        return Err(ApiError::Invalid {
            message: format!(
                "at most {} events of each kind a report",
                crate::usage::MAX_COUNT
            ),
            field: Some(format!("sources.{id}")),
        });
    }
    let standing = usage::exchange(&api.store, &api.clock, &q.gateway, &report).await?;
    Ok(data(standing))
}

/// Who reports failed runs of functions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct NodeQuery {
    /// The node's name (`--node-name`, default its host name), shown with its runs.
    node: String,
}

/// A node's failed runs of functions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FunctionErrors {
    /// The runs, oldest first (at most 500).
    #[schema(max_items = 500)]
    errors: Vec<crate::functions::errors::Reported>,
}

/// Whether `run` is one a node makes: an id of 1 to 64 of `A-Z a-z 0-9 - _`, a function
/// id, target and kind of at most 200, 200 and 20 bytes (not empty), a `messageId` of at
/// most 400 bytes and a message of at most 2000.
fn well_formed(run: &Reported) -> bool {
    let e = &run.error;
    let sized = |text: &str, most: usize| !text.is_empty() && text.len() <= most;
    sized(&run.id, 64)
        && run
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && sized(&run.function, 200)
        && sized(&e.target, 200)
        && sized(&e.kind, 20)
        && e.message_id.as_ref().is_none_or(|m| m.len() <= 400)
        && e.message.len() <= 2000
}

/// Failed runs one report may carry (a node sends at most 100).
const MAX_REPORTED_ERRORS: usize = 500;

/// Keeps a node's failed runs of functions (its gateway's source functions, its
/// delivery's insert functions), for `GET /api/v1/functions/{id}/errors`. Runs of a
/// function the workspace does not have, runs already kept (the same id) and runs not
/// well formed are dropped; `{"kept": n}` says how many were kept.
#[utoipa::path(
    post,
    path = "/internal/v1/function-errors",
    tag = "Catalog",
    params(NodeQuery),
    request_body = FunctionErrors,
    responses((status = 200, description = "`{kept}`: the runs kept.", body = Object))
)]
async fn report_function_errors(
    State(api): State<Arc<Api>>,
    node: Node,
    Query(q): Query<NodeQuery>,
    Body(report): Body<FunctionErrors>,
) -> Result<Response, ApiError> {
    if !policy::node_may(node.row.role, Action::ReportFunctionErrors) {
        return Err(ApiError::Forbidden(Forbidden::NodeRole(
            Action::ReportFunctionErrors,
        )));
    }
    if q.node.is_empty() || q.node.len() > 100 || q.node.chars().any(char::is_control) {
        return Err(ApiError::field("node", "1 to 100 printable characters"));
    }
    if report.errors.len() > MAX_REPORTED_ERRORS {
        return Err(ApiError::field(
            "errors",
            format!("at most {MAX_REPORTED_ERRORS} runs a report"),
        ));
    }
    // A run that is not one a node makes is skipped, never the whole report (the rest
    // would be resent for ever). A run's time is the node's, kept within a week back and
    // a few minutes ahead of this clock: a run dated far ahead would stay newest.
    let now = api.clock.now();
    let runs: Vec<Reported> = report
        .errors
        .into_iter()
        .filter(well_formed)
        .map(|mut run| {
            if run.error.at > now + chrono::TimeDelta::minutes(5)
                || run.error.at < now - chrono::TimeDelta::days(7)
            {
                run.error.at = now;
            }
            run
        })
        .collect();
    // Where they ran: the credential's name (a node cannot speak for another
    // credential), and the node's own name when it differs.
    let name = if q.node == node.row.name {
        q.node.clone()
    } else {
        format!("{} ({})", node.row.name, q.node)
    };
    let mut change = api.store.change().await?;
    let kept = crate::control::store::function_errors::keep(
        change.conn(),
        &node.row.workspace_id,
        &name,
        &runs,
    )
    .await?;
    change.commit().await?;
    Ok(data(serde_json::json!({ "kept": kept })))
}

/// A request made with a live node credential.
#[derive(Debug)]
pub struct Node {
    /// The credential's row.
    pub row: NodeRow,
    /// Client address.
    pub ip: Option<String>,
}

impl FromRequestParts<Arc<Api>> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, ApiError> {
        let digest = bearer(&parts.headers)
            .and_then(|t| token::parse_node(t).ok())
            .ok_or(ApiError::Unauthorized(Unauthenticated::InvalidToken))?;
        let mut conn = api.store.read().await?;
        let row = nodes::by_digest(&mut conn, &digest.to_hex())
            .await?
            .ok_or(ApiError::Unauthorized(Unauthenticated::InvalidToken))?;
        let now = Utc::now();
        if row.revoked_at.is_some_and(|at| at <= now) {
            return Err(ApiError::Unauthorized(Unauthenticated::TokenRevoked));
        }
        if !row.live(now) {
            return Err(ApiError::Unauthorized(Unauthenticated::TokenExpired));
        }
        let ip = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(Self { row, ip })
    }
}

/// Gateways and the revision each applied.
#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "Catalog",
    responses((status = 200, description = "Gateways and the revision each applied.", body = Data<GatewayList>))
)]
async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = gateways::list(&mut conn).await?;
    let revision = api.store.catalog_revision().await?;
    Ok(data(GatewayList {
        gateways: rows.into_iter().map(Gateway::from).collect(),
        revision,
    }))
}
