//! `/` (the caller's workspace) and `/settings`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::wire::Data;
use super::{Api, ApiError, Body, Caller, data, text_field};
use crate::control::audit::Kind;
use crate::control::policy::Action;
use crate::control::store::workspaces::{self, Settings};

/// The longest any token, node credential or workspace's `tokenMaxDays` may run, and the
/// shortest: 1 to 3650 days (ten years), as the OpenAPI document states.
pub const TOKEN_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// The answer to a lifetime outside [`TOKEN_DAYS`].
pub fn days_message() -> String {
    format!("from {} to {} days", TOKEN_DAYS.start(), TOKEN_DAYS.end())
}

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(workspace))
        .route("/settings", get(settings).patch(update_settings))
}

/// The workspace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// Always `self-hosted`.
    pub region: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `{"workspace": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOne {
    /// The caller's workspace.
    pub workspace: Workspace,
}

/// Workspace settings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceSettings {
    /// Members publish tracking plans directly (without review).
    pub members_can_publish: bool,
    /// Longest lifetime of an API token or node credential, in days.
    pub token_max_days: u32,
    /// A reviewer may approve their own tracking-plan change request (default off).
    pub allow_self_approval: bool,
    /// The longest just-in-time elevation, in minutes (default 480: 8 hours).
    pub elevation_max_minutes: u32,
}

impl From<Settings> for WorkspaceSettings {
    fn from(settings: Settings) -> Self {
        Self {
            members_can_publish: settings.members_can_publish,
            token_max_days: settings.token_max_days,
            allow_self_approval: settings.self_approval,
            elevation_max_minutes: settings.elevation_max_minutes,
        }
    }
}

/// `{"settings": …}`, and after a change the workspace's name.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsOne {
    /// The settings.
    pub settings: WorkspaceSettings,
    /// The workspace's name (in the answer to a change only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /api/v1/`: the caller's workspace.
#[utoipa::path(
    get,
    path = "/api/v1/",
    tag = "Workspaces",
    responses((status = 200, description = "The caller's workspace.", body = Data<WorkspaceOne>))
)]
pub async fn workspace(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    let ws = &caller.workspace;
    Ok(data(WorkspaceOne {
        workspace: Workspace {
            id: ws.id.clone(),
            name: ws.name.clone(),
            slug: ws.slug.clone(),
            region: "self-hosted".to_owned(),
            created_at: ws.created_at,
        },
    }))
}

/// Workspace settings.
#[utoipa::path(
    get,
    path = "/api/v1/settings",
    tag = "Workspaces",
    responses((status = 200, description = "Workspace settings.", body = Data<SettingsOne>))
)]
async fn settings(State(api): State<Arc<Api>>, caller: Caller) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::ViewWorkspace).await?;
    Ok(data(SettingsOne {
        settings: caller.workspace.settings.into(),
        name: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsPatch {
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    name: Option<String>,
    #[serde(default)]
    members_can_publish: Option<bool>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    token_max_days: Option<u32>,
    #[serde(default)]
    allow_self_approval: Option<bool>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1440)]
    elevation_max_minutes: Option<u32>,
}

/// Change workspace settings.
#[utoipa::path(
    patch,
    path = "/api/v1/settings",
    tag = "Workspaces",
    request_body = SettingsPatch,
    responses((status = 200, description = "Change workspace settings.", body = Data<SettingsOne>))
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
        .is_some_and(|d| !TOKEN_DAYS.contains(&d))
    {
        return Err(ApiError::field("tokenMaxDays", days_message()));
    }
    if body
        .elevation_max_minutes
        .is_some_and(|m| !(1..=1440).contains(&m))
    {
        return Err(ApiError::field(
            "elevationMaxMinutes",
            "1 to 1440 (24 hours)",
        ));
    }
    api.allow_workspace(&caller, Action::ModifySettings).await?;
    let settings = Settings {
        members_can_publish: body
            .members_can_publish
            .unwrap_or(before.settings.members_can_publish),
        token_max_days: body
            .token_max_days
            .unwrap_or(before.settings.token_max_days),
        self_approval: body
            .allow_self_approval
            .unwrap_or(before.settings.self_approval),
        elevation_max_minutes: body
            .elevation_max_minutes
            .unwrap_or(before.settings.elevation_max_minutes),
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
    Ok(data(SettingsOne {
        settings: settings.into(),
        name: Some(name),
    }))
}
