//! `/groups`: user groups, their members and the role they map to.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::invites::{InviteMade, make_invite, valid_email};
use super::permissions::Permission;
use super::roles::parse_role;
use super::users::{UserList, user_wire};
use super::wire::{Data, Pagination, Status, document};
use super::{
    Api, ApiError, Body, Caller, PageQuery, Path, Query, data, page_in_memory, page_of, success,
    text_field,
};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role};
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::users::{self};
use crate::control::store::{Change, invites};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{id}",
            get(read_group).patch(update_group).delete(remove_group),
        )
        .route("/groups/{id}/users", get(group_members).post(add_members))
        .route("/groups/{id}/users/{user}", delete(remove_member))
        .route("/groups/{id}/invites", get(group_invites))
        // Segment's client says `/group/` (singular) for these two.
        .route(
            "/group/{id}/users",
            axum::routing::put(replace_members).delete(remove_members),
        )
        .route("/users/{id}/groups", get(groups_of_user))
}

/// A group of members.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// How many members it has.
    pub member_count: i64,
    /// The workspace role its members get at least, if any.
    pub role: Option<String>,
    /// `local` or `scim`.
    pub origin: String,
    /// Its role in Segment's permission shape (none without a role).
    pub permissions: Vec<Permission>,
}

/// `{"userGroup": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupOne {
    /// The group.
    pub user_group: Group,
}

/// `{"userGroup": …, "invites": […]}`: a group after members were added or replaced.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupChanged {
    /// The group after the change.
    pub user_group: Group,
    /// The workspace invites the change made (emails that were not members yet), each
    /// with its one-time link.
    pub invites: Vec<InviteMade>,
}

/// A page of groups.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    /// The page.
    pub user_groups: Vec<Group>,
    /// Paging.
    pub pagination: Pagination,
}

/// A page of a member's groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserGroupList {
    /// The page.
    pub groups: Vec<Group>,
    /// Paging.
    pub pagination: Pagination,
}

/// A page of emails invited into a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmailList {
    /// The page.
    pub emails: Vec<String>,
    /// Paging.
    pub pagination: Pagination,
}

fn group_wire(g: &GroupRow) -> Group {
    Group {
        id: g.id.clone(),
        name: g.name.clone(),
        member_count: g.member_count,
        role: g.role.map(|r| r.name().to_owned()),
        origin: g.origin.clone(),
        permissions: g.role.map(Permission::role).into_iter().collect(),
    }
}

/// List groups.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    tag = "IAM Groups",
    params(PageQuery),
    responses((status = 200, description = "List groups.", body = Data<GroupList>))
)]
async fn list_groups(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = groups::list(&mut conn, &caller.workspace.id, &page.after, page.count).await?;
    let last = rows.last().map(|g| g.id.as_str());
    let out: Vec<Group> = rows.iter().map(group_wire).collect();
    Ok(page_of(
        out,
        &page,
        rows.len(),
        last,
        |user_groups, pagination| GroupList {
            user_groups,
            pagination,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    name: String,
    /// Sluice: the workspace role members get at least.
    #[serde(default)]
    #[schema(pattern = "^(owner|admin|member|read_only)$")]
    role: Option<String>,
}

/// Create a group.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    tag = "IAM Groups",
    request_body = CreateGroup,
    responses((status = 200, description = "Create a group.", body = Data<GroupOne>))
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
    let group = groups::create(
        change.conn(),
        &caller.workspace.id,
        &name,
        role,
        "local",
        caller.now,
    )
    .await?;
    change
        .record(caller.draft(
            Kind::GroupCreate,
            "group",
            &group.id,
            None,
            Some(document(&group_wire(&group))?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(GroupOne {
        user_group: group_wire(&group),
    }))
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
    responses((status = 200, description = "Get a group.", body = Data<GroupOne>))
)]
async fn read_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let group = load_group(&api, &caller, &id).await?;
    Ok(data(GroupOne {
        user_group: group_wire(&group),
    }))
}

/// Delete a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    responses((status = 200, description = "Delete a group.", body = Data<Status>))
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
        .record(caller.draft(
            Kind::GroupDelete,
            "group",
            &id,
            Some(document(&group_wire(&group))?),
            None,
        ))
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
    responses((status = 200, description = "A group's members.", body = Data<UserList>))
)]
async fn group_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    load_group(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let mut out = Vec::new();
    for user in groups::members(&mut conn, &id).await? {
        if let Some(u) = users::get(&mut conn, &caller.workspace.id, &user).await? {
            out.push((u.id.clone(), user_wire(&u)));
        }
    }
    Ok(page_in_memory(out, &page, |users, pagination| UserList {
        users,
        pagination,
    }))
}

/// Emails invited into a group who have not joined yet.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{id}/invites",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id"), PageQuery),
    responses((status = 200, description = "Emails invited into the group.", body = Data<EmailList>))
)]
async fn group_invites(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    load_group(&api, &caller, &id).await?;
    let mut conn = api.store.read().await?;
    let emails: Vec<(String, String)> = groups::invites_of(&mut conn, &id)
        .await?
        .into_iter()
        .map(|e| (e.clone(), e))
        .collect();
    Ok(page_in_memory(emails, &page, |emails, pagination| {
        EmailList { emails, pagination }
    }))
}

/// The groups a member belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/groups",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id"), PageQuery),
    responses((status = 200, description = "The member's groups.", body = Data<UserGroupList>))
)]
async fn groups_of_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = q.page()?;
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let mut conn = api.store.read().await?;
    users::get(&mut conn, &caller.workspace.id, &id)
        .await?
        .ok_or_else(|| ApiError::missing("user", &id))?;
    let rows = groups::of_user(&mut conn, &caller.workspace.id, &id).await?;
    let out: Vec<(String, Group)> = rows.iter().map(|g| (g.id.clone(), group_wire(g))).collect();
    Ok(page_in_memory(out, &page, |groups, pagination| {
        UserGroupList { groups, pagination }
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupPatch {
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    name: String,
}

/// Rename a group.
#[utoipa::path(
    patch,
    path = "/api/v1/groups/{id}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = GroupPatch,
    responses((status = 200, description = "Rename a group.", body = Data<GroupOne>))
)]
async fn update_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<GroupPatch>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 100)?;
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let before = load_group(&api, &caller, &id).await?;
    if before.role == Some(Role::Owner) {
        // Its name decides which identity-provider group fills it (SCIM matches groups
        // by name): renaming an owner group is an ownership matter.
        api.allow_workspace(&caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    groups::rename(change.conn(), &id, &name).await?;
    let after = GroupRow {
        name,
        ..before.clone()
    };
    change
        .record(caller.draft(
            Kind::GroupUpdate,
            "group",
            &id,
            Some(document(&group_wire(&before))?),
            Some(document(&group_wire(&after))?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(GroupOne {
        user_group: group_wire(&after),
    }))
}

/// Adds people to a group inside `change`: members join at once; anyone else is
/// invited to the workspace (read-only, unless an invite is pending already) and joins
/// on accepting. Returns the new invites with their links.
async fn join(
    api: &Api,
    change: &mut Change,
    caller: &Caller,
    group: &str,
    emails: &[String],
) -> Result<Vec<InviteMade>, ApiError> {
    let mut invited = Vec::new();
    for (i, email) in emails.iter().enumerate() {
        let field = format!("emails[{i}]");
        let email = valid_email(&field, email)?;
        match users::by_email(change.conn(), &caller.workspace.id, &email).await? {
            Some(user) => {
                groups::add_member(change.conn(), group, &user.id).await?;
                change
                    .record(caller.draft(
                        Kind::GroupMemberAdd,
                        "group",
                        group,
                        None,
                        Some(json!({"userId": user.id})),
                    ))
                    .await?;
            }
            None => {
                let pending = invites::list(change.conn(), &caller.workspace.id)
                    .await?
                    .into_iter()
                    .any(|(e, _)| e == email);
                if !pending {
                    invited.push(
                        make_invite(
                            api,
                            change,
                            caller,
                            &email,
                            Role::ReadOnly,
                            &invites::Terms::default(),
                        )
                        .await?,
                    );
                }
                groups::add_invite(change.conn(), group, &email).await?;
                change
                    .record(caller.draft(
                        Kind::GroupInviteAdd,
                        "group",
                        group,
                        None,
                        Some(json!({"email": email})),
                    ))
                    .await?;
            }
        }
    }
    Ok(invited)
}

/// The group after a change, as Segment's client wants it (`{"userGroup": …}`), with
/// the invites the change made.
async fn group_answer(
    api: &Api,
    caller: &Caller,
    id: &str,
    invited: Vec<InviteMade>,
) -> Result<Response, ApiError> {
    let group = load_group(api, caller, id).await?;
    Ok(data(GroupChanged {
        user_group: group_wire(&group),
        invites: invited,
    }))
}

/// Replace a group's members (Segment's `replaceUsersInUserGroup`).
#[utoipa::path(
    put,
    path = "/api/v1/group/{id}/users",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = Members,
    responses((status = 200, description = "Replace a group's members.", body = Data<GroupChanged>))
)]
async fn replace_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Members>,
) -> Result<Response, ApiError> {
    if body.emails.len() > 100 {
        return Err(ApiError::field("emails", "at most 100 emails"));
    }
    let group = may_change_members(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    let wanted: Vec<String> = body
        .emails
        .iter()
        .map(|e| e.trim().to_lowercase())
        .collect();
    for user in groups::members(change.conn(), &group.id).await? {
        let Some(row) = users::get(change.conn(), &caller.workspace.id, &user).await? else {
            continue;
        };
        if !wanted.contains(&row.email) {
            groups::remove_member(change.conn(), &group.id, &user).await?;
            change
                .record(caller.draft(
                    Kind::GroupMemberRemove,
                    "group",
                    &group.id,
                    Some(json!({"userId": user})),
                    None,
                ))
                .await?;
        }
    }
    let invited = join(&api, &mut change, &caller, &group.id, &body.emails).await?;
    change.commit().await?;
    group_answer(&api, &caller, &id, invited).await
}

/// Remove members by email (Segment's `removeUsersFromUserGroup`:
/// `DELETE /group/{id}/users?emails[0]=…`).
#[utoipa::path(
    delete,
    path = "/api/v1/group/{id}/users",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id"), ("emails[0]" = String, Query, description = "Email of a member to remove (emails[1], … for more)", pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s.\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$", max_length = 254)),
    responses((status = 200, description = "Remove members by email.", body = Data<Status>))
)]
async fn remove_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
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
    if emails.is_empty() || emails.len() > 100 {
        return Err(ApiError::field(
            "emails",
            "name 1 to 100 members: emails[0]=…",
        ));
    }
    let group = may_change_members(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    for email in &emails {
        if let Some(user) = users::by_email(change.conn(), &caller.workspace.id, email).await? {
            groups::remove_member(change.conn(), &group.id, &user.id).await?;
            change
                .record(caller.draft(
                    Kind::GroupMemberRemove,
                    "group",
                    &group.id,
                    Some(json!({"userId": user.id})),
                    None,
                ))
                .await?;
        }
    }
    change.commit().await?;
    Ok(success())
}

/// The group, if the caller may change its members: managing members, and for a group
/// that makes owners, the right to transfer ownership.
async fn may_change_members(api: &Api, caller: &Caller, id: &str) -> Result<GroupRow, ApiError> {
    api.allow_workspace(caller, Action::ManageMembers).await?;
    let group = load_group(api, caller, id).await?;
    if group.role == Some(Role::Owner) {
        api.allow_workspace(caller, Action::TransferOwnership)
            .await?;
    }
    Ok(group)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Members {
    #[schema(max_items = 100, value_type = Vec<String>, pattern = "^[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+@[^@\\s.\\u0000-\\u001f\\u007f-\\u009f][^@\\s\\u0000-\\u001f\\u007f-\\u009f]*\\.[^@\\s\\u0000-\\u001f\\u007f-\\u009f]+$", max_length = 254)]
    emails: Vec<String>,
}

/// Add members by email.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/users",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = Members,
    responses((status = 200, description = "Add members by email.", body = Data<GroupChanged>))
)]
async fn add_members(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<Members>,
) -> Result<Response, ApiError> {
    if body.emails.len() > 100 {
        return Err(ApiError::field("emails", "at most 100 emails"));
    }
    let group = may_change_members(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    let invited = join(&api, &mut change, &caller, &group.id, &body.emails).await?;
    change.commit().await?;
    group_answer(&api, &caller, &id, invited).await
}

/// Remove a member from a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{id}/users/{user}",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id"), ("user" = String, Path, description = "User id")),
    responses((status = 200, description = "Remove a member from a group.", body = Data<Status>))
)]
async fn remove_member(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    // Taking someone out of an owner group unmakes their ownership: owners only.
    may_change_members(&api, &caller, &id).await?;
    let mut change = api.store.change().await?;
    groups::remove_member(change.conn(), &id, &user).await?;
    change
        .record(caller.draft(
            Kind::GroupMemberRemove,
            "group",
            &id,
            Some(json!({"userId": user})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
