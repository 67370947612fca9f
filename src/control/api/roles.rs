//! `/roles`: the workspace roles and the source roles permissions name.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::permissions::SOURCE_ROLES;
use super::wire::{Data, Pagination};
use super::{Api, ApiError, Caller, PageQuery, Query, page_in_memory};
use crate::control::policy::{Action, Role};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/roles", get(roles))
}

/// A role permissions name (Segment's `RoleV1`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleEntry {
    /// Id: `owner`, `admin`, `member`, `read_only`, `source_admin`, …
    pub id: String,
    /// Title.
    pub name: String,
    /// What it gives.
    pub description: String,
    /// `WORKSPACE` or `SOURCE`.
    pub resource_type: String,
}

/// A page of roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    /// The page.
    pub roles: Vec<RoleEntry>,
    /// Paging.
    pub pagination: Pagination,
}

/// Workspace roles, then source roles (resource-level).
#[utoipa::path(
    get,
    path = "/api/v1/roles",
    tag = "IAM Roles",
    params(PageQuery),
    responses((status = 200, description = "Workspace roles.", body = Data<RoleList>))
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
    let workspace = Role::ALL.iter().rev().map(|r| RoleEntry {
        id: r.name().to_owned(),
        name: role_title(*r).to_owned(),
        description: role_title(*r).to_owned(),
        resource_type: "WORKSPACE".to_owned(),
    });
    let source = SOURCE_ROLES.iter().map(|(id, title, level)| RoleEntry {
        id: (*id).to_owned(),
        name: (*title).to_owned(),
        description: format!("{title}: `{}` on the sources named", level.name()),
        resource_type: "SOURCE".to_owned(),
    });
    let items: Vec<(String, RoleEntry)> = workspace
        .chain(source)
        .enumerate()
        .map(|(i, v)| (format!("{i:04}"), v))
        .collect();
    Ok(page_in_memory(items, &page, |roles, pagination| RoleList {
        roles,
        pagination,
    }))
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
