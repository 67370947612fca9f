//! `/changes`: changes to protected resources kept for review (a source carrying a
//! protected label, a destination connected to one, a function deployed to one): the
//! call as it was made, the resource as it was, and approving (the call is made then),
//! rejecting or withdrawing it. The API decides who may.

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
use super::sources::{cursor_query, encode};
use super::team::about_the_form;
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use crate::control::policy::{Action, ChangeRequestRef, ResourceRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/changes", get(list))
        .route("/changes/{id}", get(read))
        .route("/changes/{id}/{verdict}", post(decide))
}

/// A change kept for review, as the API shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceChange {
    id: String,
    resource_type: String,
    resource_id: String,
    protected_sources: Vec<String>,
    author_id: String,
    description: String,
    method: String,
    path: String,
    body: Value,
    before: Value,
    status: String,
    created_at: When,
    decided_by: Option<String>,
    comment: String,
}

impl ResourceChange {
    /// The page's link to the resource, when it has a page.
    fn link(&self) -> Option<String> {
        let page = match self.resource_type.as_str() {
            "source" => "sources",
            "destination" => "destinations",
            _ => return None,
        };
        (!self.resource_id.is_empty()).then(|| format!("/{page}/{}", self.resource_id))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeList {
    resource_change_requests: Vec<ResourceChange>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChangeOne {
    resource_change_request: ResourceChange,
}

#[derive(Template)]
#[template(path = "console/changes.html")]
struct ListPage {
    frame: Frame,
    changes: Vec<ResourceChange>,
    status: String,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/change.html")]
struct ChangePage {
    frame: Frame,
    change: ResourceChange,
    body: String,
    before: String,
    may_review: bool,
    may_withdraw: bool,
    /// What the approved call answered (a write key made by it is shown here, once).
    result: Option<String>,
    error: Option<String>,
}

/// The states a list may show, as the API names them.
const STATES: [&str; 4] = ["OPEN", "APPLIED", "REJECTED", "WITHDRAWN"];

/// `GET /changes` (`?status=`, open ones by default).
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let asked = super::query_value(&parts, "status");
        let status = STATES
            .into_iter()
            .find(|s| asked.as_deref() == Some(*s))
            .unwrap_or("OPEN");
        let list: ChangeList = inner(&console, &parts)
            .get(&format!(
                "/api/v1/resource-change-requests?status={status}&{}",
                cursor_query(&parts)
            ))
            .await?;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &ListPage {
                frame: viewer.frame("Changes for review", Section::Changes, &parts),
                changes: list.resource_change_requests,
                status: status.to_owned(),
                next: list.pagination.next,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

async fn change_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    result: Option<String>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let change = inner(console, parts)
        .get::<ChangeOne>(&format!("/api/v1/resource-change-requests/{}", encode(id)))
        .await?
        .resource_change_request;
    let open = change.status == "OPEN";
    let mine = ResourceRef::ChangeRequest(ChangeRequestRef {
        id: &change.id,
        author: &change.author_id,
    });
    let may_review = open && viewer.may_here(Action::ApplyProtectedChange);
    let may_withdraw = open && viewer.may(Action::AmendChangeRequest, mine);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let title = format!("Change {}", change.id);
    Ok(render(
        super::form_status(error.as_deref()),
        &ChangePage {
            frame: viewer.frame(title, Section::Changes, parts),
            body: pretty(&change.body),
            before: pretty(&change.before),
            change,
            may_review,
            may_withdraw,
            result,
            error,
        },
    ))
}

/// `GET /changes/{id}`.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    change_page(&console, &parts, &id, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /changes/{id}/approve|reject|withdraw`, with `comment` (required to reject).
/// An approval answers with the page itself: what the call made (a write key) is shown
/// on that answer only.
async fn decide(
    State(console): State<Console>,
    Path((id, verdict)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let decided = async {
        let form = Form::read(&body)?;
        let (outcome, request) = match verdict.as_str() {
            // Answered with the page itself (below): no outcome to name.
            "approve" => (
                Outcome::Decided,
                form.some("comment").map(|c| json!({ "comment": c })),
            ),
            "reject" => (
                Outcome::Rejected,
                Some(json!({"comment": form.get("comment")})),
            ),
            "withdraw" => (Outcome::Withdrawn, None),
            _ => {
                return Err(Refusal::Api {
                    status: StatusCode::NOT_FOUND,
                    message: "No such page.".into(),
                });
            }
        };
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!("/api/v1/resource-change-requests/{}/{verdict}", encode(&id)),
                request,
            )
            .await;
        match answer {
            Ok(answer) if verdict == "approve" => {
                let result = answer
                    .data
                    .get("result")
                    .filter(|r| r.as_object().is_some_and(|o| !o.is_empty()))
                    .map(|r| serde_json::to_string_pretty(r).unwrap_or_default());
                change_page(&console, &parts, &id, result, None).await
            }
            Ok(_) => Ok(done(&format!("/changes/{}", encode(&id)), outcome)),
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => change_page(&console, &parts, &id, None, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    decided.await.unwrap_or_else(IntoResponse::into_response)
}
