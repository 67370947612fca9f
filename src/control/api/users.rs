//! `/users`: the workspace's members, their roles and removal.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::roles::{parse_role, role_title};
use super::schema;
use super::{Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, success};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role};
use crate::control::store::users::{self, UserRow};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/users", get(list_users).delete(remove_users))
        .route(
            "/users/{id}",
            get(read_user).patch(update_user).delete(remove_user),
        )
}

pub(super) fn user_wire(u: &UserRow) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": format!("{} {}", u.first_name, u.last_name).trim(),
        "firstName": u.first_name,
        "lastName": u.last_name,
        "role": u.role.name(),
        "active": u.active,
        "origin": u.origin,
        "createdAt": u.created_at,
        "lastLogin": u.last_login,
        "permissions": [{"roleId": u.role.name(), "roleName": role_title(u.role), "resources": []}],
    })
}

/// List members.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "IAM Users",
    params(PageQuery),
    responses((status = 200, description = "List members.", body = schema::Data<schema::UserList>))
)]
async fn list_users(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = users::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|u| u.id.as_str());
    let out: Vec<Value> = rows.iter().map(user_wire).collect();
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |items, pagination| json!({"users": items, "pagination": pagination}),
    ))
}

async fn load_user(api: &Api, caller: &Caller, id: &str) -> Result<UserRow, ApiError> {
    let mut conn = api.store.read().await?;
    users::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("user", id))
}

/// Get a member.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Get a member.", body = schema::Data<schema::UserOne>))
)]
async fn read_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let user = load_user(&api, &caller, &id).await?;
    let mut wire = user_wire(&user);
    let mut conn = api.store.read().await?;
    wire["permissions"] = super::permissions::of_user(&mut conn, &caller, &user).await?;
    Ok(data(json!({ "user": wire })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserPatch {
    role: String,
}

/// Changes a member's role. Making or unmaking an owner is an ownership transfer.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    request_body = UserPatch,
    responses((status = 200, description = "Change a member's role.", body = schema::Data<schema::UserOne>))
)]
async fn update_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<UserPatch>,
) -> Result<Response, ApiError> {
    let role = parse_role("role", &body.role)?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let before = load_user(&api, &caller, &id).await?;
    if role == Role::Owner || is_owner(&api, &caller, &id).await? {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    if before.role == Role::Owner
        && role != Role::Owner
        && users::owner_count(change.conn(), &caller.workspace.id).await? <= 1
    {
        return Err(ApiError::Conflict(
            "the last owner cannot be demoted".into(),
        ));
    }
    users::set_role(change.conn(), &caller.workspace.id, &id, role).await?;
    change
        .record(caller.draft(
            Kind::UserRoleUpdate,
            "user",
            &id,
            Some(json!({"role": before.role.name()})),
            Some(json!({"role": role.name()})),
        ))
        .await?;
    change.commit().await?;
    let mut after = before;
    after.role = role;
    Ok(data(json!({"user": user_wire(&after)})))
}

/// Remove a member (their tokens stop working).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Remove a member (their tokens stop working).", body = schema::Data<schema::Status>))
)]
async fn remove_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    remove_all(&api, &caller, &[id]).await
}

/// Remove members by id (Segment's `deleteUsers`: `DELETE /users?userIds[0]=…`).
#[utoipa::path(
    delete,
    path = "/api/v1/users",
    tag = "IAM Users",
    params(("userIds[0]" = String, Query, description = "Id of a member to remove (userIds[1], … for more)")),
    responses((status = 200, description = "Remove members (their tokens stop working).", body = schema::Data<schema::Status>))
)]
async fn remove_users(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut ids = Vec::new();
    for (key, value) in &q {
        if key.starts_with("userIds[") && key.ends_with(']') && !value.is_empty() {
            ids.push(value.clone());
        } else {
            return Err(ApiError::field(key, "not userIds[i]=<user id>"));
        }
    }
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::field(
            "userIds",
            "name 1 to 100 members: userIds[0]=…",
        ));
    }
    remove_all(&api, &caller, &ids).await
}

/// Whether the member is an owner, by their own role or a group's.
async fn is_owner(api: &Api, caller: &Caller, id: &str) -> Result<bool, ApiError> {
    let mut conn = api.store.read().await?;
    Ok(users::principal(&mut conn, &caller.workspace.id, id)
        .await?
        .is_some_and(|u| u.effective_role() == Role::Owner))
}

/// Removes members in one change: all or none. Removing an owner is an ownership
/// transfer, and the last owner stays.
async fn remove_all(api: &Api, caller: &Caller, ids: &[String]) -> Result<Response, ApiError> {
    api.allow_workspace(caller, Action::ManageMembers).await?;
    let mut before = Vec::new();
    for id in ids {
        let user = load_user(api, caller, id).await?;
        // An owner through a group is an owner: removing them is an ownership transfer.
        if is_owner(api, caller, &user.id).await? {
            api.allow_workspace(caller, Action::TransferOwnership)
                .await?;
        }
        before.push(user);
    }
    let mut change = api.store.change().await?;
    for user in &before {
        if user.role == Role::Owner
            && users::owner_count(change.conn(), &caller.workspace.id).await? <= 1
        {
            return Err(ApiError::Conflict(
                "the last owner cannot be removed".into(),
            ));
        }
        users::remove(change.conn(), &caller.workspace.id, &user.id, caller.now).await?;
        change
            .record(caller.draft(
                Kind::UserRemove,
                "user",
                &user.id,
                Some(user_wire(user)),
                None,
            ))
            .await?;
    }
    change.commit().await?;
    Ok(success())
}
