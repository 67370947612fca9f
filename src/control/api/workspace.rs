//! `/` (the caller's workspace) and `/settings`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::schema;
use super::{Api, ApiError, Body, Caller, data, text_field};
use crate::control::audit::Kind;
use crate::control::policy::Action;
use crate::control::store::workspaces::{self, Settings};

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(workspace))
        .route("/settings", get(settings).patch(update_settings))
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
            Kind::WorkspaceSettingsUpdate,
            "workspace",
            &before.id,
            Some(json!({"name": before.name, "settings": before.settings})),
            Some(json!({"name": name, "settings": settings})),
        ))
        .await?;
    change.commit().await?;
    Ok(data(json!({"settings": settings, "name": name})))
}
