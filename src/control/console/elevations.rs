//! `/elevations`: temporary access. Anyone asks for a role (never owner) or a level on
//! a source or destination, for a while, saying why; who holds what is asked for
//! approves or denies it; the requester or an approver ends it early.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::Form;
use super::sources::{Source, encode};
use super::{Change, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, inner, render};
use crate::control::policy::{
    Action, DestinationRef, ElevationRef, Level, ResourceRef, Role, SourceRef, Wanted,
};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/elevations", get(list).post(ask))
        .route("/elevations/{id}/{verdict}", post(decide))
}

/// An elevation as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Elevation {
    id: String,
    user_id: String,
    role: Option<String>,
    resource: Option<Value>,
    level: Option<String>,
    pub(super) reason: String,
    duration_minutes: i64,
    pub(super) status: String,
    requested_at: When,
    pub(super) ends_at: Option<When>,
}

impl Elevation {
    /// What it asks for, in words.
    pub fn wants(&self) -> String {
        if let Some(role) = &self.role {
            return format!("the {role} role");
        }
        let text = |k: &str| {
            self.resource
                .as_ref()
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let level = self.level.clone().unwrap_or_default();
        match text("kind").as_str() {
            "source_label" => format!(
                "{level} on sources labelled {}: {}",
                text("key"),
                text("value")
            ),
            kind => format!("{level} on {kind} {}", text("id")),
        }
    }
}

/// A page of elevations.
#[derive(Debug, Deserialize)]
pub struct ElevationList {
    /// The page.
    pub elevations: Vec<Elevation>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
struct SourceOne {
    source: Source,
}

/// An elevation with the buttons the viewer may use on it.
struct Line {
    elevation: Elevation,
    may_decide: bool,
    may_end: bool,
}

#[derive(Template)]
#[template(path = "console/elevations.html")]
struct ElevationsPage {
    frame: Frame,
    lines: Vec<Line>,
    next: Option<String>,
    error: Option<String>,
}

/// Whether the viewer may decide and end `e`, as `authorize` says (the source's labels
/// read as the API shows them; a source the viewer cannot see decides nothing here).
async fn buttons(viewer: &Viewer, console: &Console, parts: &Parts, e: &Elevation) -> (bool, bool) {
    let level = e.level.as_deref().and_then(Level::parse);
    let kind = e
        .resource
        .as_ref()
        .and_then(|r| r.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let id = e
        .resource
        .as_ref()
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut labels = Vec::new();
    if kind == "source"
        && let Ok(one) = inner(console, parts)
            .get::<SourceOne>(&format!("/api/v1/sources/{}", encode(&id)))
            .await
    {
        labels = one.source.label_pairs();
    }
    let wants = match (e.role.as_deref().and_then(Role::parse), kind, level) {
        (Some(role), _, _) => Wanted::Role(role),
        (None, "source", Some(level)) => Wanted::Source(
            SourceRef {
                id: &id,
                labels: &labels,
            },
            level,
        ),
        (None, "destination", Some(level)) => Wanted::Destination(
            DestinationRef {
                id: &id,
                connected: &[],
            },
            level,
        ),
        (None, _, Some(level)) => Wanted::Label(level),
        _ => return (false, false),
    };
    let target = ResourceRef::Elevation(ElevationRef {
        id: &e.id,
        requester: &e.user_id,
        wants,
    });
    let pending = e.status == "PENDING";
    let live = pending || e.status == "APPROVED" || e.status == "ACTIVE";
    (
        pending && viewer.may(Action::ApproveElevation, target),
        live && viewer.may(Action::EndElevation, target),
    )
}

async fn page(
    console: &Console,
    parts: &Parts,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let list: ElevationList = inner(console, parts)
        .get(&format!(
            "/api/v1/elevations?{}",
            super::sources::cursor_query(parts)
        ))
        .await?;
    let mut lines = Vec::new();
    for elevation in list.elevations {
        let (may_decide, may_end) = buttons(&viewer, console, parts, &elevation).await;
        lines.push(Line {
            elevation,
            may_decide,
            may_end,
        });
    }
    Ok(render(
        super::form_status(error.as_deref()),
        &ElevationsPage {
            frame: viewer.frame("Temporary access", Section::Elevations, parts),
            lines,
            next: list.pagination.next,
            error,
        },
    ))
}

/// `GET /elevations`: the requests the viewer may see (their own, those they may
/// approve; every one for who manages members), and the form to ask.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /elevations`: `role`, or `kind` + `resource` + `level`; `reason`; `minutes`.
async fn ask(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let asked = async {
        let form = Form::read(&body)?;
        let minutes: u32 = form.get("minutes").parse().unwrap_or(0);
        let mut request = json!({"reason": form.get("reason"), "durationMinutes": minutes});
        match form.some("role") {
            Some(role) => request["role"] = role.into(),
            None => {
                request["resource"] = json!({"kind": form.get("kind"), "id": form.get("resource")});
                request["level"] = form.get("level").into();
            }
        }
        submit(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/elevations", Some(request)),
            ("/elevations", Outcome::ElevationAsked),
            Some(|why| page(&console, &parts, Some(why))),
        )
        .await
    };
    asked.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /elevations/{id}/approve|deny|end`: with an optional `comment`.
async fn decide(
    State(console): State<Console>,
    Path((id, verdict)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let decided = async {
        let outcome = match verdict.as_str() {
            "approve" => Outcome::ElevationApproved,
            "deny" => Outcome::ElevationDenied,
            "end" => Outcome::ElevationEnded,
            _ => {
                return Err(Refusal::Api {
                    status: StatusCode::NOT_FOUND,
                    message: "No such page.".into(),
                });
            }
        };
        let form = Form::read(&body)?;
        // Ending takes no body; deciding, an optional comment.
        let request = (verdict != "end").then(|| {
            form.some("comment")
                .map_or_else(|| json!({}), |c| json!({"comment": c}))
        });
        submit(
            &console,
            &parts,
            &form,
            Change::new(
                Method::POST,
                format!("/api/v1/elevations/{}/{verdict}", encode(&id)),
                request,
            ),
            ("/elevations", outcome),
            Some(|why| page(&console, &parts, Some(why))),
        )
        .await
    };
    decided.await.unwrap_or_else(IntoResponse::into_response)
}
