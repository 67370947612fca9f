//! `/grants`: Sluice's levels on sources, destinations and labels, per user or group.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::wire::{Data, Status, document};
use super::{Api, ApiError, Body, Caller, Path, data, slug_field, success, text_field};
use crate::control::audit::Kind;
use crate::control::policy::{Action, Level, Target};
use crate::control::store::grants::{self, GrantRow, Holder, NewGrant};
use crate::control::store::groups::{self};
use crate::control::store::sources;
use crate::control::store::users::{self};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/grants", get(list_grants).post(create_grant))
        .route("/grants/{id}", delete(remove_grant))
}

/// A grant: a level on a source, a destination or every source with a label, held by a
/// user or a group.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Id.
    pub id: String,
    /// Who holds it: `{"type":"user"|"group","id":…}`.
    #[schema(value_type = Object)]
    pub principal: Holder,
    /// What it applies to: `{"kind":"source","id":…}`, `{"kind":"destination","id":…}`
    /// or `{"kind":"source_label","key":…,"value":…}`.
    pub resource: Target,
    /// `full`, `read_write`, `read_only` or `no_access`.
    #[schema(value_type = String)]
    pub level: Level,
    /// Why it was given.
    pub justification: String,
    /// Who approved it.
    pub approved_by: String,
    /// Its end (just-in-time access), if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl From<&GrantRow> for Grant {
    fn from(row: &GrantRow) -> Self {
        Self {
            id: row.id.clone(),
            principal: row.principal.clone(),
            resource: row.resource.clone(),
            level: row.level,
            justification: row.justification.clone(),
            approved_by: row.approved_by.clone(),
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

/// `{"grant": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantOne {
    /// The grant.
    pub grant: Grant,
}

/// `{"grants": […]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    /// Every grant of the workspace.
    pub grants: Vec<Grant>,
}

/// Every grant of the workspace.
#[utoipa::path(
    get,
    path = "/api/v1/grants",
    tag = "Access",
    responses((status = 200, description = "Every grant of the workspace.", body = Data<GrantList>))
)]
async fn list_grants(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ManageMembers).await?;
    let mut conn = api.store.read().await?;
    let rows = grants::list(&mut conn, &caller.workspace.id).await?;
    Ok(data(GrantList {
        grants: rows.iter().map(Grant::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateGrant {
    /// `{"type":"user"|"group","id":…}`.
    principal: PrincipalWire,
    /// `{"kind":"source","id":…}`, `{"kind":"destination","id":…}` or
    /// `{"kind":"source_label","key":…,"value":…}`.
    resource: Target,
    /// `full`, `read_write`, `read_only`, `no_access`.
    #[schema(pattern = "^(full|read_write|read_only|no_access)$")]
    level: String,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PrincipalWire {
    /// `user` or `group`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(user|group)$")]
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
    responses((status = 200, description = "Give a user or group a level on a source, destination or label.", body = Data<GrantOne>))
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
                .ok_or_else(|| ApiError::missing("user", &body.principal.id))?;
            Holder::User(body.principal.id.clone())
        }
        "group" => {
            groups::get(&mut conn, ws, &body.principal.id)
                .await?
                .ok_or_else(|| ApiError::missing("group", &body.principal.id))?;
            Holder::Group(body.principal.id.clone())
        }
        _ => return Err(ApiError::field("principal.type", "user or group")),
    };
    match &body.resource {
        Target::Source { id } => {
            sources::get(&mut conn, ws, id)
                .await?
                .ok_or_else(|| ApiError::missing("source", id))?;
        }
        Target::Destination { id } => {
            crate::control::store::destinations::get(&mut conn, api.store.key(), ws, id)
                .await?
                .ok_or_else(|| ApiError::missing("destination", id))?;
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
    let grant = Grant::from(&row);
    change
        .record(caller.draft(
            Kind::GrantCreate,
            "grant",
            &row.id,
            None,
            Some(document(&grant)?),
        ))
        .await?;
    change.commit().await?;
    Ok(data(GrantOne { grant }))
}

/// Remove a grant.
#[utoipa::path(
    delete,
    path = "/api/v1/grants/{id}",
    tag = "Access",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, description = "Remove a grant.", body = Data<Status>))
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
        .record(caller.draft(
            Kind::GrantDelete,
            "grant",
            &id,
            Some(document(&Grant::from(&row))?),
            None,
        ))
        .await?;
    change.commit().await?;
    Ok(success())
}
