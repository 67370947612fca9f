//! `/settings`: the workspace's settings (its name, who publishes tracking plans, token
//! lifetimes, self-approval, the longest temporary access), the labels that protect
//! sources, and the workspace's labels. Everyone may read them; owners and admins change
//! them (the API decides).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::form::Form;
use super::sources::encode;
use super::{Change, one_change};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, inner, render};
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/settings", get(page).post(save))
        .route("/settings/protected-labels", post(protect))
        .route("/settings/labels", post(add_label))
        .route("/settings/labels/delete", post(delete_label))
}

/// The workspace's settings as the API shows them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    members_can_publish: bool,
    token_max_days: u32,
    allow_self_approval: bool,
    elevation_max_minutes: u32,
}

#[derive(Debug, Deserialize)]
struct SettingsOne {
    settings: Settings,
}

#[derive(Debug, Deserialize)]
struct Workspace {
    name: String,
    slug: String,
}

#[derive(Debug, Deserialize)]
struct WorkspaceOne {
    workspace: Workspace,
}

#[derive(Debug, Deserialize)]
struct Protected {
    labels: Vec<String>,
}

/// A workspace label.
#[derive(Debug, Deserialize)]
struct Label {
    key: String,
    value: String,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
struct LabelList {
    labels: Vec<Label>,
}

#[derive(Template)]
#[template(path = "console/settings.html")]
struct SettingsPage {
    frame: Frame,
    workspace: Workspace,
    settings: Settings,
    protected: Vec<String>,
    labels: Vec<Label>,
    /// Whether the viewer may change them (the forms are shown).
    may_change: bool,
}

/// `GET /settings`.
async fn page(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let api = inner(&console, &parts);
        let workspace = api.get::<WorkspaceOne>("/api/v1/").await?.workspace;
        let settings = api.get::<SettingsOne>("/api/v1/settings").await?.settings;
        let protected = api
            .get::<Protected>("/api/v1/settings/protected-labels")
            .await?
            .labels;
        let labels = api.get::<LabelList>("/api/v1/labels").await?.labels;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &SettingsPage {
                frame: viewer.frame("Workspace settings", Section::Settings, &parts),
                workspace,
                settings,
                protected,
                labels,
                may_change: viewer.may_here(Action::ModifySettings),
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

/// A whole number from the form, or a `422` naming the field.
fn number(form: &Form, name: &str, label: &str) -> Result<u32, Refusal> {
    form.get(name).parse().map_err(|_| Refusal::Api {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("{label} must be a whole number."),
    })
}

/// `POST /settings`: name, the checkboxes and the two limits, as one change.
async fn save(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let saved = ("/settings", Outcome::SettingsChanged);
    one_change(&console, &parts, &body, saved, |form| {
        let days = number(form, "tokenMaxDays", "The longest token lifetime")?;
        let minutes = number(form, "elevationMaxMinutes", "The longest temporary access")?;
        let request = json!({
            "name": form.get("name"),
            "membersCanPublish": form.get("membersCanPublish") == "on",
            "allowSelfApproval": form.get("allowSelfApproval") == "on",
            "tokenMaxDays": days,
            "elevationMaxMinutes": minutes,
        });
        Ok(Change::new(
            Method::PATCH,
            "/api/v1/settings",
            Some(request),
        ))
    })
    .await
}

/// `POST /settings/protected-labels`: `labels`, `key:value` separated by commas (the
/// whole set: it replaces the old one; blank turns protection off).
async fn protect(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/settings", Outcome::SettingsChanged),
        |form| {
            let labels: Vec<String> = form
                .get("labels")
                .split(',')
                .map(|l| l.split_whitespace().collect::<String>())
                .filter(|l| !l.is_empty())
                .collect();
            Ok(Change::new(
                Method::PUT,
                "/api/v1/settings/protected-labels",
                Some(json!({ "labels": labels })),
            ))
        },
    )
    .await
}

/// `POST /settings/labels`: a new workspace label (key, value, description).
async fn add_label(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/settings", Outcome::LabelsChanged),
        |form| {
            let mut label = json!({"key": form.get("key"), "value": form.get("value")});
            if let Some(description) = form.some("description") {
                label["description"] = description.into();
            }
            Ok(Change::new(
                Method::POST,
                "/api/v1/labels",
                Some(json!({ "label": label })),
            ))
        },
    )
    .await
}

/// `POST /settings/labels/delete`: the label `key`/`value`.
async fn delete_label(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/settings", Outcome::LabelsChanged),
        |form| {
            let path = format!(
                "/api/v1/labels/{}/{}",
                encode(form.get("key")),
                encode(form.get("value"))
            );
            Ok(Change::new(Method::DELETE, path, None))
        },
    )
    .await
}
