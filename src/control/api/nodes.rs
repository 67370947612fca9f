//! `/nodes`: credentials of remote gateways and delivery nodes (owners and admins make
//! and revoke them, as they do tokens). A node credential (`slc_node_…`) is of its own
//! kind, never a person's token: it reads the catalog feed and nothing else, and only a
//! delivery node's receives destination credentials in it.
//!
//! Answers are the typed structs below, the same types the OpenAPI document shows.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::{Data, Pagination, Status};
use super::workspace::{TOKEN_DAYS, days_message};
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, success, text_field,
};
use crate::control::audit::Kind;
use crate::control::policy::{Action, NodeRole};
use crate::control::store::nodes::{self, NewNode, NodeRow};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/nodes", get(list).post(create))
        .route("/nodes/{id}", get(read).delete(revoke))
}

/// A node credential as the API shows it (never the credential).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Id.
    pub id: String,
    /// Name (e.g. the node's host name).
    pub name: String,
    /// `gateway` (catalog without destination credentials) or `delivery` (with them).
    #[schema(value_type = String)]
    pub role: NodeRole,
    /// The prefix and first characters.
    pub display: String,
    /// Who made it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Refused from then on.
    pub expires_at: DateTime<Utc>,
}

impl From<&NodeRow> for Node {
    fn from(row: &NodeRow) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            role: row.role,
            display: row.display.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

/// `{"node": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeOne {
    /// The node credential.
    pub node: Node,
}

/// A node credential made: the secret is shown here only.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeMade {
    /// The node credential.
    pub node: Node,
    /// `slc_node_…`: pass it as `--node-token` (or `SLUICE_NODE_TOKEN`).
    pub secret: String,
}

/// A page of node credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// The page.
    pub nodes: Vec<Node>,
    /// Paging.
    pub pagination: Pagination,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateNode {
    /// 1 to 100 printable characters.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    name: String,
    /// `gateway` or `delivery`.
    #[schema(pattern = "^(gateway|delivery)$")]
    role: String,
    /// Days until it stops working: 1 to the workspace's `tokenMaxDays` (default: that).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

/// List node credentials.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    tag = "Nodes",
    params(PageQuery),
    responses((status = 200, description = "List node credentials.", body = Data<NodeList>))
)]
async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let mut conn = api.store.read().await?;
    let rows = nodes::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|r| r.id.as_str());
    let items: Vec<Node> = rows.iter().map(Node::from).collect();
    Ok(page_of(
        items,
        &page,
        rows.len(),
        last,
        |nodes, pagination| NodeList { nodes, pagination },
    ))
}

/// Make a node credential (secret shown once).
#[utoipa::path(
    post,
    path = "/api/v1/nodes",
    tag = "Nodes",
    request_body = CreateNode,
    responses((status = 200, description = "Make a node credential (secret shown once).", body = Data<NodeMade>))
)]
async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateNode>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 100)?;
    let role = NodeRole::parse(&body.role)
        .ok_or_else(|| ApiError::field("role", "gateway or delivery"))?;
    let max_days = caller.workspace.settings.token_max_days;
    let days = body.expires_in_days.unwrap_or(max_days);
    if !TOKEN_DAYS.contains(&days) {
        return Err(ApiError::field("expiresInDays", days_message()));
    }
    if days > max_days {
        return Err(ApiError::FieldConflict {
            field: "expiresInDays",
            message: format!("at most {max_days} days (the workspace's tokenMaxDays)"),
        });
    }
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let issued = token::issue_node().map_err(|e| {
        tracing::error!(error = %e, "no randomness for a node credential");
        ApiError::Internal
    })?;
    let mut change = api.store.change().await?;
    let row = nodes::insert(
        change.conn(),
        &caller.workspace.id,
        NewNode {
            name: &name,
            role,
            digest: &issued.digest.to_hex(),
            display: &issued.display,
            created_by: &caller.user.id,
            expires_at: caller.now + Duration::days(i64::from(days)),
        },
        caller.now,
    )
    .await?;
    let node = Node::from(&row);
    change
        .record(caller.draft(Kind::NodeCreate, "node", &row.id, None, Some(json!(node))))
        .await?;
    change.commit().await?;
    Ok(data(NodeMade {
        node,
        secret: issued.plaintext.expose().to_owned(),
    }))
}

async fn load(api: &Api, caller: &Caller, id: &str) -> Result<NodeRow, ApiError> {
    let mut conn = api.store.read().await?;
    nodes::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("node", id))
}

/// Get a node credential (never the secret).
#[utoipa::path(
    get,
    path = "/api/v1/nodes/{id}",
    tag = "Nodes",
    params(("id" = String, Path, description = "Node credential id")),
    responses((status = 200, description = "Get a node credential.", body = Data<NodeOne>))
)]
async fn read(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let row = load(&api, &caller, &id).await?;
    Ok(data(NodeOne {
        node: Node::from(&row),
    }))
}

/// Revoke a node credential (its next catalog request is refused).
#[utoipa::path(
    delete,
    path = "/api/v1/nodes/{id}",
    tag = "Nodes",
    params(("id" = String, Path, description = "Node credential id")),
    responses((status = 200, description = "Revoke a node credential.", body = Data<Status>))
)]
async fn revoke(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageTokens).await?;
    let before = load(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    nodes::revoke(change.conn(), &id, caller.now).await?;
    change
        .record(caller.draft(
            Kind::NodeRevoke,
            "node",
            &id,
            Some(json!(Node::from(&before))),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
