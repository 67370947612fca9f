//! Segment's permission API on Sluice's model: `POST|PUT /users/{id}/permissions` and
//! `POST|PUT /groups/{id}/permissions`, and the permissions invites carry.
//!
//! A permission is a role on resources. Workspace roles (`owner`, `admin`, `member`,
//! `read_only`) take the `WORKSPACE` resource and set the workspace role. Source roles
//! (`source_admin`, `source_read_write`, `source_read_only`) take `SOURCE` resources (one
//! source by id) or any resource with `labels` (every source with each label) and become
//! grants of `full`, `read_write`, `read_only`. Someone given source roles only is a
//! *scoped* member: they reach those sources and nothing else (no role default), so an
//! invite scoped to one source never widens into workspace-wide access.
//!
//! Who may do it is asked of `authorize` like everywhere else: managing members, and for
//! anything that makes or unmakes an owner, transferring ownership.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::roles::role_title;
use super::wire::{Data, Label};
use super::{Api, ApiError, Body, Caller, Path, data};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Level, ResourceRef, Role, Target};
use crate::control::store::grants::{self, GrantRow, Holder, NewGrant};
use crate::control::store::groups::{self, GroupRow};
use crate::control::store::{Change, sources, users};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/users/{id}/permissions",
            post(add_to_user).put(replace_for_user),
        )
        .route(
            "/groups/{id}/permissions",
            post(add_to_group).put(replace_for_group),
        )
}

/// Most permissions, and most resources named, in one request.
const MAX_NAMED: usize = 100;

/// The resource-level roles: id, title, the level they grant on a source.
pub const SOURCE_ROLES: [(&str, &str, Level); 3] = [
    ("source_admin", "Source Admin", Level::Full),
    ("source_read_write", "Source Read & Write", Level::ReadWrite),
    ("source_read_only", "Source Read-only", Level::ReadOnly),
];

/// A label on a permission's resource.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelIn {
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    key: String,
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    value: String,
    #[serde(default)]
    description: Option<String>,
}

/// A resource a permission applies to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceIn {
    /// The workspace's id (`WORKSPACE`) or a source's id (`SOURCE`).
    id: String,
    /// `WORKSPACE` or `SOURCE`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(WORKSPACE|SOURCE)$")]
    kind: String,
    /// Every source with each of these labels (source roles only).
    #[serde(default)]
    labels: Option<Vec<LabelIn>>,
}

/// One permission: a role on resources.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionIn {
    /// A workspace role (`owner`, `admin`, `member`, `read_only`) or a source role
    /// (`source_admin`, `source_read_write`, `source_read_only`).
    #[schema(
        pattern = "^(owner|admin|member|read_only|source_admin|source_read_write|source_read_only)$"
    )]
    role_id: String,
    /// For a workspace role, may be left out (the workspace).
    #[serde(default)]
    resources: Vec<ResourceIn>,
}

/// `{"permissions": […]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionsBody {
    permissions: Vec<PermissionIn>,
}

/// What a list of permissions comes to in Sluice's model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assignment {
    /// The workspace role named, if any.
    pub role: Option<Role>,
    /// The grants named.
    pub grants: Vec<(Target, Level)>,
}

impl Assignment {
    /// The role a person holding only this gets: the named one, else `member` when a
    /// grant lets them edit something, else `read_only`.
    pub fn role_or_least(&self) -> Role {
        self.role.unwrap_or_else(|| {
            if self.grants.iter().any(|(_, l)| *l >= Level::ReadWrite) {
                Role::Member
            } else {
                Role::ReadOnly
            }
        })
    }

    /// Source roles only: the person reaches what the grants give, nothing else.
    pub fn scoped(&self) -> bool {
        self.role.is_none()
    }
}

/// Reads permissions (`field` names them in errors); unknown roles and resource types
/// are refused, never guessed.
pub fn parse(field: &str, permissions: &[PermissionIn]) -> Result<Assignment, ApiError> {
    let named: usize = permissions
        .iter()
        .map(|p| {
            p.resources
                .iter()
                .map(|r| r.labels.as_ref().map_or(1, |l| l.len().max(1)))
                .sum::<usize>()
        })
        .sum();
    if permissions.len() > MAX_NAMED || named > MAX_NAMED {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_NAMED} permissions and resources"),
        ));
    }
    let mut out = Assignment::default();
    for (i, p) in permissions.iter().enumerate() {
        let at = format!("{field}[{i}]");
        // A workspace role on the WORKSPACE sets the role; on sources (or labels) it
        // grants that role's level there (`member` on one source: `read_write` on it).
        let (role, level) = match Role::parse(&p.role_id) {
            Some(role) => (Some(role), role.default_level()),
            None => match SOURCE_ROLES.iter().find(|(id, ..)| *id == p.role_id) {
                Some((_, _, level)) => (None, *level),
                None => {
                    let known: Vec<&str> = Role::ALL
                        .iter()
                        .map(|r| r.name())
                        .chain(SOURCE_ROLES.iter().map(|(id, ..)| *id))
                        .collect();
                    return Err(ApiError::field(
                        &format!("{at}.roleId"),
                        format!("unknown role; one of {}", known.join(", ")),
                    ));
                }
            },
        };
        let level = &level;
        if p.resources.is_empty() {
            match role {
                Some(role) => out.role = Some(out.role.map_or(role, |r| r.max(role))),
                None => {
                    return Err(ApiError::field(
                        &format!("{at}.resources"),
                        "a source role names at least one resource",
                    ));
                }
            }
        }
        for (j, r) in p.resources.iter().enumerate() {
            let rat = format!("{at}.resources[{j}]");
            match (&r.labels, r.kind.as_str()) {
                (Some(labels), "WORKSPACE" | "SOURCE") if !labels.is_empty() => {
                    for (k, l) in labels.iter().enumerate() {
                        super::slug_field(&format!("{rat}.labels[{k}].key"), &l.key)?;
                        super::slug_field(&format!("{rat}.labels[{k}].value"), &l.value)?;
                        out.grants.push((
                            Target::SourceLabel {
                                key: l.key.clone(),
                                value: l.value.clone(),
                            },
                            *level,
                        ));
                    }
                }
                (_, "SOURCE") => out
                    .grants
                    .push((Target::Source { id: r.id.clone() }, *level)),
                (_, "WORKSPACE") if role.is_some() => {
                    let role = role.unwrap_or(Role::ReadOnly);
                    out.role = Some(out.role.map_or(role, |r| r.max(role)));
                }
                _ => {
                    return Err(ApiError::field(
                        &rat,
                        "a source role takes SOURCE resources, or resources with labels",
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Checks that every source a grant names exists and the caller sees it (a hidden one
/// answers as missing).
pub async fn check_targets(api: &Api, caller: &Caller, a: &Assignment) -> Result<(), ApiError> {
    let mut conn = api.store.read().await?;
    for (target, _) in &a.grants {
        if let Target::Source { id } = target {
            let missing = || ApiError::missing("source", id);
            let source = sources::get(&mut conn, &caller.workspace.id, id)
                .await?
                .ok_or_else(missing)?;
            if !caller
                .decide(Action::ViewSource, ResourceRef::Source(source.as_ref()))
                .allowed
            {
                return Err(missing());
            }
        }
    }
    Ok(())
}

/// A permission in Segment's shape: a role on resources.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// A workspace role (`owner`, `admin`, `member`, `read_only`) or a source role
    /// (`source_admin`, `source_read_write`, `source_read_only`).
    pub role_id: String,
    /// The role's title.
    pub role_name: String,
    /// What it applies to (none: the role alone, as a member's own role is shown).
    pub resources: Vec<PermissionResource>,
}

impl Permission {
    /// A workspace role on no resource named (how a member's or group's role shows).
    pub fn role(role: Role) -> Self {
        Self {
            role_id: role.name().to_owned(),
            role_name: role_title(role).to_owned(),
            resources: Vec::new(),
        }
    }
}

/// A resource a permission applies to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PermissionResource {
    /// The workspace's id (`WORKSPACE`) or a source's id (`SOURCE`).
    pub id: String,
    /// `WORKSPACE` or `SOURCE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Every source with these labels (source roles by label only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<Label>>,
}

impl PermissionResource {
    fn of(id: &str, kind: &str) -> Self {
        Self {
            id: id.to_owned(),
            kind: kind.to_owned(),
            labels: None,
        }
    }
}

/// `{"permissions": […]}`: a member's or group's permissions after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionList {
    /// The permissions.
    pub permissions: Vec<Permission>,
}

/// A role and grants in Segment's permission shape.
pub fn wire(role: Option<Role>, grants: &[GrantRow], workspace: &str) -> Vec<Permission> {
    let mut out = Vec::new();
    if let Some(role) = role {
        out.push(Permission {
            resources: vec![PermissionResource::of(workspace, "WORKSPACE")],
            ..Permission::role(role)
        });
    }
    for g in grants {
        let Some((id, title, _)) = SOURCE_ROLES.iter().find(|(_, _, l)| *l == g.level) else {
            continue; // no_access and destination grants have no Segment role
        };
        let resource = match &g.resource {
            Target::Source { id } => PermissionResource::of(id, "SOURCE"),
            Target::SourceLabel { key, value } => PermissionResource {
                labels: Some(vec![Label::new(key, value)]),
                ..PermissionResource::of(workspace, "WORKSPACE")
            },
            Target::Destination { .. } => continue,
        };
        out.push(Permission {
            role_id: (*id).to_owned(),
            role_name: (*title).to_owned(),
            resources: vec![resource],
        });
    }
    out
}

/// A member's permissions as `caller` may see them: their role (unless scoped) and their
/// own grants, leaving out grants on sources hidden from the caller.
pub async fn of_user(
    conn: &mut sqlx::AnyConnection,
    caller: &Caller,
    user: &users::UserRow,
) -> Result<Vec<Permission>, ApiError> {
    let mut own = grants::of(conn, &Holder::User(user.id.clone())).await?;
    let mut shown = Vec::new();
    for g in own.drain(..) {
        if let Target::Source { id } = &g.resource {
            let Some(source) = sources::get(conn, &caller.workspace.id, id).await? else {
                continue;
            };
            if !caller
                .decide(Action::ViewSource, ResourceRef::Source(source.as_ref()))
                .allowed
            {
                continue;
            }
        }
        shown.push(g);
    }
    let role = (!user.scoped).then_some(user.role);
    Ok(wire(role, &shown, &caller.workspace.id))
}

/// Puts the grants of `a` on `holder` inside `change` (after removing the holder's own
/// grants when `replace`).
async fn put_grants(
    change: &mut Change,
    caller: &Caller,
    holder: &Holder,
    a: &Assignment,
    replace: bool,
) -> Result<(), ApiError> {
    if replace {
        for g in grants::of(change.conn(), holder).await? {
            grants::delete(change.conn(), &g.id).await?;
        }
    }
    for (target, level) in &a.grants {
        grants::put(
            change.conn(),
            &caller.workspace.id,
            NewGrant {
                principal: holder.clone(),
                resource: target.clone(),
                level: *level,
                justification: "permissions API".into(),
                approved_by: caller.user.id.clone(),
                expires_at: None,
            },
            caller.now,
        )
        .await?;
    }
    Ok(())
}

async fn for_user(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: PermissionsBody,
    replace: bool,
) -> Result<Response, ApiError> {
    let a = parse("permissions", &body.permissions)?;
    api.allow_workspace(caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let before = users::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("user", id))?;
    let was = of_user(&mut conn, caller, &before).await?;
    let holder = Holder::User(id.to_owned());
    // The audit keeps every grant as stored (no_access and destination grants included),
    // not only what Segment's shape can say.
    let grants_before = grants::of(&mut conn, &holder).await?;
    drop(conn);
    check_targets(api, caller, &a).await?;
    // Adding keeps the current role unless a higher one is named; replacing sets it.
    let role = match (replace, a.role) {
        (true, _) => a.role_or_least(),
        (false, Some(r)) => r.max(before.role),
        (false, None) => before.role,
    };
    let scoped = if replace {
        a.scoped()
    } else {
        before.scoped && a.role.is_none()
    };
    if (role == Role::Owner || before.role == Role::Owner) && role != before.role {
        api.allow_workspace(caller, Action::TransferOwnership)
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
    if role != before.role {
        users::set_role(change.conn(), &caller.workspace.id, id, role).await?;
    }
    users::set_scoped(change.conn(), &caller.workspace.id, id, scoped).await?;
    put_grants(&mut change, caller, &holder, &a, replace).await?;
    let (before_role, before_scoped) = (before.role, before.scoped);
    let after_row = users::UserRow {
        role,
        scoped,
        ..before
    };
    let now = of_user(change.conn(), caller, &after_row).await?;
    let grants_after = grants::of(change.conn(), &holder).await?;
    let action = if replace {
        Kind::UserPermissionsReplace
    } else {
        Kind::UserPermissionsAdd
    };
    change
        .record(caller.draft(
            action,
            "user",
            id,
            Some(json!({"role": before_role.name(), "scoped": before_scoped, "grants": grants_before, "permissions": was})),
            Some(json!({"role": role.name(), "scoped": scoped, "grants": grants_after, "permissions": now})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(PermissionList { permissions: now }))
}

async fn for_group(
    api: &Api,
    caller: &Caller,
    id: &str,
    body: PermissionsBody,
    replace: bool,
) -> Result<Response, ApiError> {
    let a = parse("permissions", &body.permissions)?;
    api.allow_workspace(caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let group: GroupRow = groups::get(&mut conn, &caller.workspace.id, id)
        .await?
        .ok_or_else(|| ApiError::missing("group", id))?;
    let holder = Holder::Group(id.to_owned());
    let grants_before = grants::of(&mut conn, &holder).await?;
    let was = wire(group.role, &grants_before, &caller.workspace.id);
    drop(conn);
    check_targets(api, caller, &a).await?;
    let role = if replace {
        a.role
    } else {
        a.role.max(group.role)
    };
    if (role == Some(Role::Owner) || group.role == Some(Role::Owner)) && role != group.role {
        api.allow_workspace(caller, Action::TransferOwnership)
            .await?;
    }
    let mut change = api.store.change().await?;
    groups::set_role(change.conn(), id, role).await?;
    put_grants(&mut change, caller, &holder, &a, replace).await?;
    let grants_after = grants::of(change.conn(), &holder).await?;
    let now = wire(role, &grants_after, &caller.workspace.id);
    let action = if replace {
        Kind::GroupPermissionsReplace
    } else {
        Kind::GroupPermissionsAdd
    };
    change
        .record(caller.draft(
            action,
            "group",
            id,
            Some(json!({"role": group.role.map(Role::name), "grants": grants_before, "permissions": was})),
            Some(json!({"role": role.map(Role::name), "grants": grants_after, "permissions": now})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(PermissionList { permissions: now }))
}

/// Add permissions to a member (a higher workspace role replaces theirs; grants are
/// added or changed).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/permissions",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    request_body = PermissionsBody,
    responses((status = 200, description = "The member's permissions after the change.", body = Data<PermissionList>))
)]
async fn add_to_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PermissionsBody>,
) -> Result<Response, ApiError> {
    for_user(&api, &caller, &id, body, false).await
}

/// Replace a member's permissions: their role and all their own grants.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/permissions",
    tag = "IAM Users",
    params(("id" = String, Path, description = "User id")),
    request_body = PermissionsBody,
    responses((status = 200, description = "The member's permissions after the change.", body = Data<PermissionList>))
)]
async fn replace_for_user(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PermissionsBody>,
) -> Result<Response, ApiError> {
    for_user(&api, &caller, &id, body, true).await
}

/// Add permissions to a group (its role and grants).
#[utoipa::path(
    post,
    path = "/api/v1/groups/{id}/permissions",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = PermissionsBody,
    responses((status = 200, description = "The group's permissions after the change.", body = Data<PermissionList>))
)]
async fn add_to_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PermissionsBody>,
) -> Result<Response, ApiError> {
    for_group(&api, &caller, &id, body, false).await
}

/// Replace a group's permissions: its role and all its grants.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{id}/permissions",
    tag = "IAM Groups",
    params(("id" = String, Path, description = "Group id")),
    request_body = PermissionsBody,
    responses((status = 200, description = "The group's permissions after the change.", body = Data<PermissionList>))
)]
async fn replace_for_group(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<PermissionsBody>,
) -> Result<Response, ApiError> {
    for_group(&api, &caller, &id, body, true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn perm(role: &str, resources: Value) -> PermissionIn {
        serde_json::from_value(json!({"roleId": role, "resources": resources})).expect("permission")
    }

    #[test]
    fn roles_map_onto_roles_and_grants_and_unknown_ones_are_refused() {
        let a = parse(
            "p",
            &[perm(
                "source_admin",
                json!([{"id": "web", "type": "SOURCE"}]),
            )],
        )
        .expect("parses");
        assert_eq!(a.role, None);
        assert!(a.scoped(), "source roles only: scoped");
        assert_eq!(a.role_or_least(), Role::Member);
        assert_eq!(
            a.grants,
            vec![(Target::Source { id: "web".into() }, Level::Full)]
        );
        let a = parse(
            "p",
            &[
                perm("member", json!([{"id": "ws", "type": "WORKSPACE"}])),
                perm("source_read_only", json!([{"id": "ws", "type": "WORKSPACE", "labels": [{"key": "environment", "value": "prod"}]}])),
            ],
        )
        .expect("parses");
        assert_eq!(a.role, Some(Role::Member));
        assert!(!a.scoped());
        assert_eq!(
            a.grants,
            vec![(
                Target::SourceLabel {
                    key: "environment".into(),
                    value: "prod".into()
                },
                Level::ReadOnly
            )]
        );
        assert!(
            parse(
                "p",
                &[perm(
                    "workspace_wizard",
                    json!([{"id": "ws", "type": "WORKSPACE"}])
                )]
            )
            .is_err()
        );
        let a = parse(
            "p",
            &[perm("member", json!([{"id": "web", "type": "SOURCE"}]))],
        )
        .expect("a workspace role on a source grants its level there");
        assert_eq!(
            a.grants,
            vec![(Target::Source { id: "web".into() }, Level::ReadWrite)]
        );
        assert!(a.scoped());
        assert!(
            parse(
                "p",
                &[perm(
                    "source_admin",
                    json!([{"id": "f", "type": "FUNCTION"}])
                )]
            )
            .is_err()
        );
        assert!(parse("p", &[perm("source_admin", json!([]))]).is_err());
        assert_eq!(
            parse("p", &[perm("member", json!([]))])
                .expect("the workspace")
                .role,
            Some(Role::Member)
        );
    }
}
