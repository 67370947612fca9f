//! `/roles`: the workspace roles and the source roles permissions name.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::permissions::SOURCE_ROLES;
use super::schema;
use super::{Api, ApiError, Caller, PageQuery, Query, page_in_memory};
use crate::control::policy::{Action, Role};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/roles", get(roles))
}

/// Workspace roles, then source roles (resource-level).
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "IAM Roles",
    params(PageQuery),
    responses((status = 200, description = "Workspace roles.", body = schema::Data<schema::RoleList>))
)]
async fn roles(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    // Workspace roles, then the source roles of `/users/{id}/permissions`; the cursor is
    // the position.
    let workspace = Role::ALL.iter().rev().map(|r| {
        json!({"id": r.name(), "name": role_title(*r), "description": role_title(*r),
               "resourceType": "WORKSPACE"})
    });
    let source = SOURCE_ROLES.iter().map(|(id, title, level)| {
        json!({"id": id, "name": title,
               "description": format!("{title}: `{}` on the sources named", level.name()),
               "resourceType": "SOURCE"})
    });
    let items: Vec<(String, Value)> = workspace
        .chain(source)
        .enumerate()
        .map(|(i, v)| (format!("{i:04}"), v))
        .collect();
    Ok(page_in_memory(
        items,
        &page,
        |items, pagination| json!({"roles": items, "pagination": pagination}),
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
