//! `/users`: the workspace's members, their roles and removal.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::permissions::Permission;
use super::roles::parse_role;
use super::wire::{Data, Pagination, Status, document};
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

/// A member.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Full name.
    pub name: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Their own role: `owner`, `admin`, `member`, `read_only`.
    pub role: String,
    /// Deactivated members can do nothing.
    pub active: bool,
    /// How they came: `bootstrap`, `setup`, `invite`, `scim`, `sso`.
    pub origin: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last login (console or SSO).
    pub last_login: Option<DateTime<Utc>>,
    /// Their permissions in Segment's shape: the role in lists; the role on the
    /// workspace and their grants when read alone.
    pub permissions: Vec<Permission>,
}

/// `{"user": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOne {
    /// The member.
    pub user: User,
}

/// A page of members.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// The page.
    pub users: Vec<User>,
    /// Paging.
    pub pagination: Pagination,
}

pub(super) fn user_wire(u: &UserRow) -> User {
    User {
        id: u.id.clone(),
        email: u.email.clone(),
        name: format!("{} {}", u.first_name, u.last_name)
            .trim()
            .to_owned(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        role: u.role.name().to_owned(),
        active: u.active,
        origin: u.origin.clone(),
        created_at: u.created_at,
        last_login: u.last_login,
        permissions: vec![Permission::role(u.role)],
    }
}

/// List members.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "IAM Users",
    params(PageQuery),
    responses((status = 200, description = "List members.", body = Data<UserList>))
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
    let out: Vec<User> = rows.iter().map(user_wire).collect();
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |users, pagination| UserList { users, pagination },
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
    responses((status = 200, description = "Get a member.", body = Data<UserOne>))
)]
async fn read_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let user = load_user(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let permissions = super::permissions::of_user(&mut conn, &caller, &user).await?;
    Ok(data(UserOne {
        user: User {
            permissions,
            ..user_wire(&user)
        },
    }))
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
    responses((status = 200, description = "Change a member's role.", body = Data<UserOne>))
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
    Ok(data(UserOne {
        user: user_wire(&after),
    }))
}

/// Remove a member (their tokens stop working).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, description = "Remove a member (their tokens stop working).", body = Data<Status>))
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
    params(("userIds[0]" = String, Query, min_length = 1, description = "Id of a member to remove (userIds[1], … for more)")),
    responses((status = 200, description = "Remove members (their tokens stop working).", body = Data<Status>))
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
pub(super) async fn is_owner(api: &Api, caller: &Caller, id: &str) -> Result<bool, ApiError> {
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
                Some(document(&user_wire(user))?),
                None,
            ))
            .await?;
    }
    change.commit().await?;
    Ok(success())
}
