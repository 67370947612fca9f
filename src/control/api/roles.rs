//! `/roles`: the workspace roles.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::schema;
use super::{Api, ApiError, Caller, data};
use crate::control::policy::{Action, Role};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/roles", get(roles))
}

/// Workspace roles.
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "IAM Roles",
    responses((status = 200, description = "Workspace roles.", body = schema::Data<schema::RoleList>))
)]
async fn roles(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let out: Vec<Value> = Role::ALL
        .iter()
        .rev()
        .map(|r| json!({"id": r.name(), "name": role_title(*r), "description": role_title(*r)}))
        .collect();
    Ok(data(
        json!({"roles": out, "pagination": {"current": "MA", "totalEntries": out.len()}}),
    ))
}

pub(super) fn role_title(role: Role) -> &'static str {
    match role {
        Role::Owner => "Workspace Owner",
        Role::Admin => "Workspace Admin",
        Role::Member => "Workspace Member",
        Role::ReadOnly => "Workspace Read-only",
    }
}

pub(super) fn parse_role(field: &str, name: &str) -> Result<Role, ApiError> {
    Role::parse(name)
        .ok_or_else(|| ApiError::field(field, "one of owner, admin, member, read_only"))
}
