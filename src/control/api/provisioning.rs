//! `/identity/scim-tokens` and `/identity/group-mappings`: what an identity provider
//! needs to provision the workspace (Sluice's own, not Segment's).
//!
//! A SCIM token can create, deactivate and delete any member but the last owner, so only
//! owners make or revoke one. A group mapping gives the members of an identity-provider
//! group (by name) a workspace role; admins manage them, up to `admin` (an identity
//! provider never makes owners).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, put};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::{Data, Status};
use super::{Api, ApiError, Body, Caller, data, success, text_field};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Role};
use crate::control::store::groups;
use crate::control::store::scim::{self as scim_store, Mapping, ScimTokenRow};
use crate::control::store::tokens::IssueError;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/identity/scim-tokens", get(list_tokens).post(create_token))
        .route(
            "/identity/scim-tokens/{id}",
            axum::routing::delete(revoke_token),
        )
        .route("/identity/group-mappings", get(list_mappings))
        .route(
            "/identity/group-mappings/{idpGroup}",
            put(set_mapping).delete(delete_mapping),
        )
}

/// A SCIM token (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimToken {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Prefix and first characters.
    pub display: String,
    /// Who made it.
    pub created_by: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Set when revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<&ScimTokenRow> for ScimToken {
    fn from(row: &ScimTokenRow) -> Self {
        Self {
            id: row.id.clone(),
            name: row.name.clone(),
            display: row.display.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// `{"scimTokens": […]}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenList {
    /// The workspace's SCIM tokens, oldest first.
    pub scim_tokens: Vec<ScimToken>,
}

/// A new SCIM token and its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenMade {
    /// The token.
    pub scim_token: ScimToken,
    /// `slc_scim_…`: give it to the identity provider as its Bearer token.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateScimToken {
    /// A name for people, e.g. `okta`.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    name: String,
}

/// Only owners make or revoke SCIM tokens: one can deprovision any member.
pub(super) async fn owners_only(api: &Api, caller: &Caller) -> Result<(), ApiError> {
    api.allow_workspace(caller, Action::ManageMembers).await?;
    api.allow_workspace(caller, Action::TransferOwnership)
        .await?;
    Ok(())
}

/// List SCIM tokens.
#[utoipa::path(
    get,
    path = "/api/v1/identity/scim-tokens",
    tag = "Identity",
    responses((status = 200, description = "The workspace's SCIM tokens.", body = Data<ScimTokenList>))
)]
async fn list_tokens(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = scim_store::tokens(&mut conn, &caller.workspace.id).await?;
    Ok(data(ScimTokenList {
        scim_tokens: rows.iter().map(ScimToken::from).collect(),
    }))
}

/// Create a SCIM token (secret shown once).
#[utoipa::path(
    post,
    path = "/api/v1/identity/scim-tokens",
    tag = "Identity",
    request_body = CreateScimToken,
    responses((status = 200, description = "Create a SCIM token (secret shown once).", body = Data<ScimTokenMade>))
)]
async fn create_token(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(body): Body<CreateScimToken>,
) -> Result<Response, ApiError> {
    let name = text_field("name", &body.name, 100)?;
    owners_only(&api, &caller).await?;
    let mut change = api.store.change().await?;
    let (row, plain) = scim_store::issue_token(
        change.conn(),
        &caller.workspace.id,
        &name,
        &caller.user.id,
        caller.now,
    )
    .await
    .map_err(|e| match e {
        IssueError::Store(e) => ApiError::from(e),
        IssueError::Random(e) => {
            tracing::error!(error = %e, "no randomness for a SCIM token");
            ApiError::Internal
        }
    })?;
    let made = ScimToken::from(&row);
    change
        .record(caller.draft(
            Kind::ScimTokenCreate,
            "scim_token",
            &row.id,
            None,
            Some(json!(made)),
        ))
        .await?;
    change.commit().await?;
    Ok(data(ScimTokenMade {
        scim_token: made,
        secret: plain.expose().to_owned(),
    }))
}

/// Revoke a SCIM token: the identity provider holding it is refused from now on.
#[utoipa::path(
    delete,
    path = "/api/v1/identity/scim-tokens/{id}",
    tag = "Identity",
    params(("id" = String, Path, description = "SCIM token id")),
    responses((status = 200, description = "Revoke a SCIM token.", body = Data<Status>))
)]
async fn revoke_token(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(id): super::Path<String>,
) -> Result<Response, ApiError> {
    owners_only(&api, &caller).await?;
    let mut change = api.store.change().await?;
    if !scim_store::revoke_token(change.conn(), &caller.workspace.id, &id, caller.now).await? {
        return Err(ApiError::missing("scim token", &id));
    }
    change
        .record(caller.draft(Kind::ScimTokenRevoke, "scim_token", &id, None, None))
        .await?;
    change.commit().await?;
    Ok(success())
}

/// An identity-provider group mapped to a role.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMapping {
    /// The group's name at the identity provider.
    pub idp_group: String,
    /// The role its members get at least: `admin`, `member` or `read_only`.
    pub role: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<&Mapping> for GroupMapping {
    fn from(m: &Mapping) -> Self {
        Self {
            idp_group: m.idp_group.clone(),
            role: m.role.name().to_owned(),
            created_at: m.created_at,
        }
    }
}

/// `{"groupMappings": […]}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMappingList {
    /// By name.
    pub group_mappings: Vec<GroupMapping>,
}

/// `{"groupMapping": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMappingOne {
    /// The mapping.
    pub group_mapping: GroupMapping,
}

/// `{idpGroup}`: a group name as the identity provider spells it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
struct MappingPath {
    /// The group's name at the identity provider.
    #[param(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        max_length = 100
    )]
    idp_group: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetGroupMapping {
    /// `admin`, `member` or `read_only` (never `owner`).
    #[schema(pattern = "^(admin|member|read_only)$")]
    role: String,
}

/// List group mappings.
#[utoipa::path(
    get,
    path = "/api/v1/identity/group-mappings",
    tag = "Identity",
    responses((status = 200, description = "Identity-provider groups mapped to roles.", body = Data<GroupMappingList>))
)]
async fn list_mappings(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = scim_store::mappings(&mut conn, &caller.workspace.id).await?;
    Ok(data(GroupMappingList {
        group_mappings: rows.iter().map(GroupMapping::from).collect(),
    }))
}

/// Map an identity-provider group to a role; the Sluice group of that name (made by
/// SCIM, or by hand) takes the role now.
#[utoipa::path(
    put,
    path = "/api/v1/identity/group-mappings/{idpGroup}",
    tag = "Identity",
    params(MappingPath),
    request_body = SetGroupMapping,
    responses((status = 200, description = "Map a group to a role.", body = Data<GroupMappingOne>))
)]
async fn set_mapping(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(path): super::Path<MappingPath>,
    Body(body): Body<SetGroupMapping>,
) -> Result<Response, ApiError> {
    let idp_group = text_field("idpGroup", &path.idp_group, 100)?;
    let role = match Role::parse(&body.role) {
        Some(Role::Owner) => {
            return Err(ApiError::field(
                "role",
                "an identity provider never makes owners: map to admin, member or read_only",
            ));
        }
        Some(role) => role,
        None => return Err(ApiError::field("role", "admin, member or read_only")),
    };
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let ws = caller.workspace.id.clone();
    let mut change = api.store.change().await?;
    let before = scim_store::mapped_role(change.conn(), &ws, &idp_group).await?;
    let group = groups::by_name(change.conn(), &ws, &idp_group).await?;
    if group.as_ref().is_some_and(|g| g.role == Some(Role::Owner)) {
        return Err(ApiError::FieldConflict {
            field: "idpGroup",
            message: "the group of that name makes owners; rename it or change its role first"
                .into(),
        });
    }
    let mapping = scim_store::set_mapping(change.conn(), &ws, &idp_group, role, caller.now).await?;
    if let Some(group) = &group {
        groups::set_role(change.conn(), &group.id, Some(role)).await?;
    }
    change
        .record(caller.draft(
            Kind::GroupMappingSet,
            "group_mapping",
            &idp_group,
            Some(json!({
                "mapped": before.map(|r| r.name()),
                "groupRole": group.as_ref().and_then(|g| g.role).map(|r| r.name()),
            })),
            Some(json!({"role": role.name(), "groupId": group.map(|g| g.id)})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(GroupMappingOne {
        group_mapping: GroupMapping::from(&mapping),
    }))
}

/// Remove a group mapping; the Sluice group of that name loses the mapped role.
#[utoipa::path(
    delete,
    path = "/api/v1/identity/group-mappings/{idpGroup}",
    tag = "Identity",
    params(MappingPath),
    responses((status = 200, description = "Remove a group mapping.", body = Data<Status>))
)]
async fn delete_mapping(
    State(api): State<Arc<Api>>,
    caller: Caller,
    super::Path(MappingPath { idp_group }): super::Path<MappingPath>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let ws = caller.workspace.id.clone();
    let mut change = api.store.change().await?;
    let Some(before) = scim_store::mapped_role(change.conn(), &ws, &idp_group).await? else {
        return Err(ApiError::missing("group mapping", &idp_group));
    };
    scim_store::delete_mapping(change.conn(), &ws, &idp_group).await?;
    if let Some(group) = groups::by_name(change.conn(), &ws, &idp_group).await?
        && group.role == Some(before)
    {
        groups::set_role(change.conn(), &group.id, None).await?;
    }
    change
        .record(caller.draft(
            Kind::GroupMappingDelete,
            "group_mapping",
            &idp_group,
            Some(json!({"role": before.name()})),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
