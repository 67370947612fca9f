//! The workspace and its people: `/` (workspace), `/users`, `/invites`, `/roles`,
//! `/groups`, `/labels`, Sluice's `/grants` and `/access/explain`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::schema;
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_of, slug_field, success,
    text_field,
};
use crate::control::policy::{
    self, Action, DestinationRef, Level, ResourceRef, Role, SourceRef, Target,
};
use crate::control::store::grants::{self, GrantRow, Holder, NewGrant};
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::users::{self, UserRow};
use crate::control::store::workspaces::{self, Settings};
use crate::control::store::{invites, sources};
use crate::control::token;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(workspace))
        .route("/settings", get(settings).patch(update_settings))
        .route("/users", get(list_users))
        .route(
            "/users/{id}",
            get(read_user).patch(update_user).delete(remove_user),
        )
        .route("/invites", get(list_invites).post(invite).delete(withdraw))
        .route("/roles", get(roles))
        .route("/groups", get(list_groups).post(create_group))
        .route("/groups/{id}", get(read_group).delete(remove_group))
        .route("/groups/{id}/users", get(group_members).post(add_members))
        .route("/groups/{id}/users/{user}", delete(remove_member))
        .route("/grants", get(list_grants).post(create_grant))
        .route("/grants/{id}", delete(remove_grant))
        .route("/labels", get(labels).post(create_label))
        .route("/access/explain", get(explain))
}

/// `GET /api/v1/`: the caller's workspace.
#[utoipa::path(
    get,
    path = "/api/v1/",
    tag = "Workspaces",
    responses((status = 200, description = "The caller's workspace.", body = schema::Data<schema::WorkspaceOne>))
)]
pub async fn workspace(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let ws = &caller.workspace;
    Ok(data(json!({"workspace": {
        "id": ws.id, "name": ws.name, "slug": ws.slug,
        "region": "self-hosted", "createdAt": ws.created_at,
    }})))
}

/// Workspace settings.
#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "Workspaces",
    responses((status = 200, description = "Workspace settings.", body = schema::Data<schema::SettingsOne>))
)]
async fn settings(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    Ok(data(json!({"settings": caller.workspace.settings})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    members_can_publish: Option<bool>,
    #[serde(default)]
    token_max_days: Option<u32>,
}

/// Change workspace settings.
#[utoipa::path(
    patch,
    path = "/api/v1/settings",
    tag = "Workspaces",
    request_body = SettingsPatch,
    responses((status = 200, description = "Change workspace settings.", body = schema::Data<schema::SettingsOne>))
)]
async fn update_settings(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<SettingsPatch>,
) -> Result<Response, ApiError> {
    let before = caller.workspace.clone();
    let name = match &body.name {
        Some(n) => text_field("name", n, 200)?,
        None => before.name.clone(),
    };
    if body
        .token_max_days
        .is_some_and(|d| !(1..=3650).contains(&d))
    {
        return Err(ApiError::field("tokenMaxDays", "from 1 to 3650"));
    }
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let settings = Settings {
        members_can_publish: body
            .members_can_publish
            .unwrap_or(before.settings.members_can_publish),
        token_max_days: body
            .token_max_days
            .unwrap_or(before.settings.token_max_days),
    };
    let mut change = api.store.change().await?;
    workspaces::update(change.conn(), &before.id, &name, settings).await?;
    change
        .record(caller.draft(
            "workspace.settings.update",
            "workspace",
            &before.id,
            Some(json!({"name": before.name, "settings": before.settings})),
            Some(json!({"name": name, "settings": settings})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({"settings": settings, "name": name})))
}

fn user_wire(u: &UserRow) -> Value {
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

fn role_title(role: Role) -> &'static str {
    match role {
        Role::Owner => "Workspace Owner",
        Role::Admin => "Workspace Admin",
        Role::Member => "Workspace Member",
        Role::ReadOnly => "Workspace Read-only",
    }
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
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = users::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|u| u.id.as_str());
    let out: Vec<Value> = rows.iter().map(user_wire).collect();
    Ok(page_of("users", out, &page, rows.len(), last))
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
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let user = load_user(&api, &caller, &id).await?;
    Ok(data(json!({"user": user_wire(&user)})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserPatch {
    role: String,
}

fn parse_role(field: &str, name: &str) -> Result<Role, ApiError> {
    Role::parse(name)
        .ok_or_else(|| ApiError::field(field, "one of owner, admin, member, read_only"))
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
    if role == Role::Owner || before.role == Role::Owner {
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
            "user.role.update",
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
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let before = load_user(&api, &caller, &id).await?;
    if before.role == Role::Owner {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    if before.role == Role::Owner
        && users::owner_count(change.conn(), &caller.workspace.id).await? <= 1
    {
        return Err(ApiError::Conflict(
            "the last owner cannot be removed".into(),
        ));
    }
    users::remove(change.conn(), &caller.workspace.id, &id, caller.now).await?;
    change
        .record(caller.draft("user.remove", "user", &id, Some(user_wire(&before)), None))
        .await?;
    change.commit().await?;
    Ok(success())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Invites {
    invites: Vec<InviteWire>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InviteWire {
    email: String,
    /// Sluice: the role (`member` when absent).
    #[serde(default)]
    role: Option<String>,
    /// Segment's permission list: a `roleId` naming a Sluice role is honoured.
    #[serde(default)]
    permissions: Option<Vec<Value>>,
}

/// Lifetime of an invite link.
const INVITE_HOURS: i64 = 72;

fn valid_email(field: &str, email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(email)
    } else {
        Err(ApiError::field(field, "not an email address"))
    }
}

/// Invites people: each gets a one-time link (valid 72 h) to join with the role.
#[utoipa::path(
    post,
    path = "/api/v1/invites",
    tag = "IAM Users",
    request_body = Invites,
    responses((status = 200, description = "Invite people (one-time links).", body = schema::Data<schema::InvitesMade>))
)]
async fn invite(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<Invites>,
) -> Result<Response, ApiError> {
    if body.invites.is_empty() || body.invites.len() > 100 {
        return Err(ApiError::field("invites", "1 to 100 invites"));
    }
    let mut wanted = Vec::new();
    for (i, inv) in body.invites.iter().enumerate() {
        let email = valid_email(&format!("invites[{i}].email"), &inv.email)?;
        let from_permissions = inv
            .permissions
            .iter()
            .flatten()
            .filter_map(|p| p.get("roleId").and_then(Value::as_str))
            .find_map(Role::parse);
        let role = match &inv.role {
            Some(name) => parse_role(&format!("invites[{i}].role"), name)?,
            None => from_permissions.unwrap_or(Role::Member),
        };
        wanted.push((email, role));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    if wanted.iter().any(|(_, r)| *r == Role::Owner) {
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    let mut out = Vec::new();
    for (email, role) in wanted {
        let secret = token::random_base62(32).map_err(|_| ApiError::Internal)?;
        let digest = token::digest_of(&secret).to_hex();
        let expires = caller.now + Duration::hours(INVITE_HOURS);
        invites::put(
            change.conn(),
            &caller.workspace.id,
            &email,
            role,
            caller.now,
        )
        .await?;
        invites::add_link(
            change.conn(),
            &caller.workspace.id,
            &digest,
            role,
            &email,
            expires,
        )
        .await?;
        change
            .record(caller.draft(
                "invite.create",
                "invite",
                &email,
                None,
                Some(json!({"email": email, "role": role.name()})),
            ))
            .await?;
        out.push(json!({
            "email": email,
            "role": role.name(),
            "link": format!("{}/setup/{secret}", api.public_url.trim_end_matches('/')),
            "expiresAt": expires,
        }));
    }
    change.commit().await?;
    let emails: Vec<&Value> = out.iter().map(|i| &i["email"]).collect();
    Ok(data(json!({ "emails": emails, "invites": out })))
}

/// Pending invites.
#[utoipa::path(
    get,
    path = "/api/v1/invites",
    tag = "IAM Users",
    responses((status = 200, description = "Pending invites.", body = schema::Data<schema::InviteList>))
)]
async fn list_invites(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = invites::list(&mut conn, &caller.workspace.id).await?;
    let emails: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    Ok(data(json!({
        "invites": emails,
        "roles": rows.iter().map(|(e, r)| json!({"email": e, "role": r.name()})).collect::<Vec<_>>(),
        "pagination": {"current": "MA", "totalEntries": rows.len()},
    })))
}

/// Withdraw invites.
#[utoipa::path(
    delete,
    path = "/api/v1/invites",
    tag = "IAM Users",
    params(("emails[0]" = String, Query, description = "Email of an invite to withdraw (emails[1], … for more)")),
    responses((status = 200, description = "Withdraw invites.", body = schema::Data<schema::Status>))
)]
async fn withdraw(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut emails = Vec::new();
    for (key, value) in &q {
        if key.starts_with("emails[") && key.ends_with(']') {
            emails.push(valid_email(key, value)?);
        } else {
            return Err(ApiError::field(key, "unknown query parameter"));
        }
    }
    if emails.is_empty() {
        return Err(ApiError::field(
            "emails",
            "name the invites to withdraw: emails[0]=…",
        ));
    }
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut change = api.store.change().await?;
    for email in &emails {
        invites::remove(change.conn(), &caller.workspace.id, email).await?;
        change
            .record(caller.draft(
                "invite.delete",
                "invite",
                email,
                Some(json!({"email": email})),
                None,
            ))
            .await?;
    }
    change.commit().await?;
    Ok(success())
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

fn grant_wire(g: &GrantRow) -> Value {
    serde_json::to_value(g).unwrap_or_default()
}

/// Every grant of the workspace.
#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "Access",
    responses((status = 200, description = "Every grant of the workspace.", body = schema::Data<schema::GrantList>))
)]
async fn list_grants(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = grants::list(&mut conn, &caller.workspace.id).await?;
    Ok(data(
        json!({"grants": rows.iter().map(grant_wire).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateGrant {
    /// `{"type":"user"|"group","id":…}`.
    principal: PrincipalWire,
    /// `{"kind":"source","id":…}`, `{"kind":"destination","id":…}` or
    /// `{"kind":"source_label","key":…,"value":…}`.
    #[schema(value_type = Object)]
    resource: Target,
    /// `full`, `read_write`, `read_only`, `no_access`.
    level: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PrincipalWire {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

/// Gives a user or group a level on a source, destination or label. Managing members
/// is the right it takes; the target must exist in the workspace.
#[utoipa::path(
    post,
    path = "/api/v1/grants",
    tag = "Access",
    request_body = CreateGrant,
    responses((status = 200, description = "Give a user or group a level on a source, destination or label.", body = schema::Data<schema::GrantOne>))
)]
async fn create_grant(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateGrant>,
) -> Result<Response, ApiError> {
    let level = Level::parse(&body.level)
        .ok_or_else(|| ApiError::field("level", "one of full, read_write, read_only, no_access"))?;
    if body.expires_at.is_some_and(|at| at <= caller.now) {
        return Err(ApiError::field("expiresAt", "must be in the future"));
    }
    let justification = match &body.justification {
        Some(j) => text_field("justification", j, 1000)?,
        None => String::new(),
    };
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let ws = &caller.workspace.id;
    let holder = match body.principal.kind.as_str() {
        "user" => {
            users::get(&mut conn, ws, &body.principal.id)
                .await?
                .ok_or_else(|| ApiError::field("principal.id", "no such user"))?;
            Holder::User(body.principal.id.clone())
        }
        "group" => {
            groups::get(&mut conn, ws, &body.principal.id)
                .await?
                .ok_or_else(|| ApiError::field("principal.id", "no such group"))?;
            Holder::Group(body.principal.id.clone())
        }
        _ => return Err(ApiError::field("principal.type", "user or group")),
    };
    match &body.resource {
        Target::Source { id } => {
            sources::get(&mut conn, ws, id)
                .await?
                .ok_or_else(|| ApiError::field("resource.id", "no such source"))?;
        }
        Target::Destination { id } => {
            crate::control::store::destinations::get(&mut conn, api.store.key(), ws, id)
                .await?
                .ok_or_else(|| ApiError::field("resource.id", "no such destination"))?;
        }
        Target::SourceLabel { key, value } => {
            slug_field("resource.key", key)?;
            slug_field("resource.value", value)?;
        }
    }
    drop(conn);
    let mut change = api.store.change().await?;
    let row = grants::put(
        change.conn(),
        ws,
        NewGrant {
            principal: holder,
            resource: body.resource,
            level,
            justification,
            approved_by: caller.user.id.clone(),
            expires_at: body.expires_at,
        },
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(
            "grant.create",
            "grant",
            &row.id,
            None,
            Some(grant_wire(&row)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({"grant": grant_wire(&row)})))
}

/// Remove a grant.
#[utoipa::path(
    delete,
    path = "/api/v1/grants/{id}",
    tag = "Access",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "Remove a grant.", body = schema::Data<schema::Status>))
)]
async fn remove_grant(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut change = api.store.change().await?;
    let row = grants::get(change.conn(), &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("grant", &id))?;
    grants::delete(change.conn(), &id).await?;
    change
        .record(caller.draft("grant.delete", "grant", &id, Some(grant_wire(&row)), None))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// Workspace labels.
#[utoipa::path(
    get,
    path = "/api/v1/labels",
    tag = "Labels",
    responses((status = 200, description = "Workspace labels.", body = schema::Data<schema::LabelList>))
)]
async fn labels(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let mut conn = api.store.read().await?;
    let rows = crate::control::store::labels::list(&mut conn, &caller.workspace.id).await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|(k, v, d)| json!({"key": k, "value": v, "description": d}))
        .collect();
    Ok(data(json!({ "labels": out })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateLabel {
    label: super::sources::LabelWire,
}

/// Create a label.
#[utoipa::path(
    post,
    path = "/api/v1/labels",
    tag = "Labels",
    request_body = CreateLabel,
    responses((status = 200, description = "Create a label.", body = schema::Data<schema::LabelOne>))
)]
async fn create_label(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateLabel>,
) -> Result<Response, ApiError> {
    let key = slug_field("label.key", &body.label.key)?;
    let value = slug_field("label.value", &body.label.value)?;
    let description = body.label.description.clone().unwrap_or_default();
    if description.chars().count() > 500 {
        return Err(ApiError::field(
            "label.description",
            "at most 500 characters",
        ));
    }
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let mut change = api.store.change().await?;
    crate::control::store::labels::create(
        change.conn(),
        &caller.workspace.id,
        &key,
        &value,
        &description,
    )
    .await?;
    let after = json!({"key": key, "value": value, "description": description});
    change
        .record(caller.draft(
            "label.create",
            "label",
            &format!("{key}:{value}"),
            None,
            Some(after.clone()),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({ "label": after })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExplainQuery {
    /// Whose access (default: the caller).
    #[serde(default)]
    user_id: Option<String>,
    /// The action, e.g. `edit_source`.
    action: String,
    /// `workspace`, `source` or `destination`.
    #[serde(default)]
    resource_type: Option<String>,
    /// The resource's id.
    #[serde(default)]
    resource_id: Option<String>,
}

/// The decision for a user, an action and a resource, with every rule that made it.
/// Explaining someone else's access takes the right to manage members.
#[utoipa::path(
    get,
    path = "/api/v1/access/explain",
    tag = "Access",
    params(ExplainQuery),
    responses((status = 200, description = "Explain a decision with every rule that made it.", body = schema::Data<schema::Explanation>))
)]
async fn explain(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let action: Action = serde_json::from_value(json!(q.action))
        .map_err(|_| ApiError::field("action", "not an action name (e.g. edit_source)"))?;
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let user_id = q.user_id.clone().unwrap_or_else(|| caller.user.id.clone());
    if user_id != caller.user.id {
        api.allow_workspace(&caller, Action::ManageMembers).await?;
    }
    let mut conn = api.store.read().await?;
    let ws = &caller.workspace.id;
    let user = users::principal(&mut conn, ws, &user_id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &user_id))?;
    let rid = q.resource_id.clone().unwrap_or_default();
    let source;
    let resource = match q.resource_type.as_deref().unwrap_or("workspace") {
        "workspace" => ResourceRef::Workspace,
        "source" => {
            source = sources::get(&mut conn, ws, &rid)
                .await?
                .ok_or_else(|| ApiError::missing("source", &rid))?;
            // The caller must see it too: explain never reveals a hidden source.
            api.allow(
                &caller,
                Action::ViewSource,
                ResourceRef::Source(source.as_ref()),
                ApiError::missing("source", &rid),
            )
            .await?;
            ResourceRef::Source(SourceRef {
                id: &source.id,
                labels: &source.labels,
            })
        }
        "destination" => {
            crate::control::store::destinations::get(&mut conn, api.store.key(), ws, &rid)
                .await?
                .ok_or_else(|| ApiError::missing("destination", &rid))?;
            let r = ResourceRef::Destination(DestinationRef { id: &rid });
            api.allow(
                &caller,
                Action::ViewDestination,
                r,
                ApiError::missing("destination", &rid),
            )
            .await?;
            r
        }
        _ => {
            return Err(ApiError::field(
                "resourceType",
                "workspace, source or destination",
            ));
        }
    };
    let decision = policy::authorize(
        policy::Principal {
            user: &user,
            token: None,
        },
        action,
        resource,
        caller.workspace.settings.policy(),
        caller.now,
    );
    Ok(data(json!({
        "userId": user_id,
        "action": action,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "rules": decision.rules,
    })))
}
