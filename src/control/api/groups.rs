//! `/groups`: user groups, their members and the role they map to.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::invites::valid_email;
use super::roles::{parse_role, role_title};
use super::schema;
use super::users::user_wire;
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, success, text_field,
};
use crate::control::policy::{Action, Role};
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::users::{self};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{id}", get(read_group).delete(remove_group))
        .route("/groups/{id}/users", get(group_members).post(add_members))
        .route("/groups/{id}/users/{user}", delete(remove_member))
}

fn group_wire(g: &GroupRow) -> Value {
    json!({
        "id": g.id, "name": g.name, "memberCount": g.member_count,
        "role": g.role.map(Role::name), "origin": g.origin,
        "permissions": g.role.map(|r| vec![json!({"roleId": r.name(), "roleName": role_title(r), "resources": []})]).unwrap_or_default(),
    })
}

/// List groups.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "IAM Groups",
    params(PageQuery),
    responses((status = 200, description = "List groups.", body = schema::Data<schema::GroupList>))
)]
async fn list_groups(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = groups::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|g| g.id.as_str());
    let out: Vec<Value> = rows.iter().map(group_wire).collect();
    Ok(page_of("userGroups", out, &page, rows.len(), last))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: String,
    /// Sluice: the workspace role members get at least.
    #[serde(default)]
    role: Option<String>,
}

/// Create a group.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "IAM Groups",
    request_body = CreateGroup,
    responses((status = 200, description = "Create a group.", body = schema::Data<schema::GroupOne>))
)]
async fn create_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateGroup>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 100)?;
    let role = body
        .role
        .as_deref()
        .map(|r| parse_role("role", r))
        .transpose()?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    if role == Some(Role::Owner) {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    let group =
        groups::create(change.conn(), &caller.workspace.id, &name, role, caller.now).await?;
    change
        .record(caller.draft(
            "group.create",
            "group",
            &group.id,
            None,
            Some(group_wire(&group)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({"userGroup": group_wire(&group)})))
}

async fn load_group(api: &Api, caller: &Caller, id: &str) -> Result<GroupRow, ApiError> {
    let mut conn = api.store.read().await?;
    groups::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("group", id))
}

/// Get a group.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "Get a group.", body = schema::Data<schema::GroupOne>))
)]
async fn read_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let group = load_group(&api, &caller, &id).await?;
    Ok(data(json!({"userGroup": group_wire(&group)})))
}

/// Delete a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "Delete a group.", body = schema::Data<schema::Status>))
)]
async fn remove_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let group = load_group(&api, &caller, &id).await?;
    if group.role == Some(Role::Owner) {
        // Deleting an owner group unmakes its members' ownership: owners only.
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    groups::delete(change.conn(), &id).await?;
    change
        .record(caller.draft("group.delete", "group", &id, Some(group_wire(&group)), None))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// A group's members.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}/users",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "A group's members.", body = schema::Data<schema::UserList>))
)]
async fn group_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    load_group(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let all = users::list(&mut conn, &caller.workspace.id, "", u32::MAX).await?;
    let mut out = Vec::new();
    for u in &all {
        if groups::of_user(&mut conn, &caller.workspace.id, &u.id)
            .await?
            .iter()
            .any(|g| g.id == id)
        {
            out.push(user_wire(u));
        }
    }
    Ok(data(json!({"users": out})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Members {
    emails: Vec<String>,
}

/// Add members by email.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/users",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = Members,
    responses((status = 200, description = "Add members by email.", body = schema::Data<schema::Status>))
)]
async fn add_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Members>,
) -> Result<Response, ApiError> {
    if body.emails.is_empty() || body.emails.len() > 100 {
        return Err(ApiError::field("emails", "1 to 100 emails"));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let group = load_group(&api, &caller, &id).await?;
    if group.role == Some(Role::Owner) {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    for (i, email) in body.emails.iter().enumerate() {
        let field = format!("emails[{i}]");
        let email = valid_email(&field, email)?;
        let user = users::by_email(change.conn(), &caller.workspace.id, &email)
            .await?
            .ok_or_else(|| ApiError::field(&field, format!("no member {email}")))?;
        groups::add_member(change.conn(), &id, &user.id).await?;
        change
            .record(caller.draft(
                "group.member.add",
                "group",
                &id,
                None,
                Some(json!({"userId": user.id})),
            ))
            .await?;
    }
    change.commit().await?;
    Ok(success())
}

/// Remove a member from a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}/users/{user}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id"), ("user" = String, Path, description = "User id")),
    responses((status = 200, description = "Remove a member from a group.", body = schema::Data<schema::Status>))
)]
async fn remove_member(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let group = load_group(&api, &caller, &id).await?;
    if group.role == Some(Role::Owner) {
        // Taking someone out of an owner group unmakes their ownership: owners only.
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    groups::remove_member(change.conn(), &id, &user).await?;
    change
        .record(caller.draft(
            "group.member.remove",
            "group",
            &id,
            Some(json!({"userId": user})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
