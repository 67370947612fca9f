//! `/reviews`: access reviews (campaigns of who holds what, each line kept or revoked
//! with a note, then closed), their evidence record, and the workspace's evidence report
//! (both as the API's Markdown, downloaded).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::Form;
use super::sources::encode;
use super::team::about_the_form;
use super::{Change, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use crate::control::policy::{Action, ResourceRef, ReviewItemRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/reviews", get(list).post(open))
        .route("/reviews/{id}", get(read))
        .route("/reviews/{id}/close", post(close))
        .route("/reviews/{id}/items/{item}", post(decide))
        .route("/reviews/{id}/evidence.md", get(review_evidence))
        .route("/evidence/workspace.md", get(workspace_evidence))
}

/// A campaign as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    id: String,
    name: String,
    status: String,
    created_at: When,
    closed_at: Option<When>,
    items: usize,
    decided: usize,
    flagged: usize,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewList {
    access_reviews: Vec<Review>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOne {
    access_review: Review,
}

/// One line of a campaign.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    kind: String,
    subject_id: String,
    subject_name: String,
    detail: Value,
    flags: Vec<String>,
    decision: Option<String>,
    note: String,
}

impl Item {
    /// What access the line is about, in words.
    fn access(&self) -> String {
        match &self.detail {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ItemList {
    items: Vec<Item>,
    pagination: super::team::Pagination,
}

#[derive(Template)]
#[template(path = "console/reviews.html")]
struct ReviewsPage {
    frame: Frame,
    reviews: Vec<Review>,
    next: Option<String>,
    may_review: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/review.html")]
struct ReviewPage {
    frame: Frame,
    review: Review,
    /// Each line, and whether the viewer may decide it.
    items: Vec<(Item, bool)>,
    /// The next lines' cursor.
    next: Option<String>,
    roles: [&'static str; 3],
    levels: [&'static str; 4],
    may_close: bool,
    error: Option<String>,
}

async fn list_page(
    console: &Console,
    parts: &Parts,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let list: ReviewList = inner(console, parts)
        .get(&format!(
            "/api/v1/access-reviews?{}",
            super::sources::cursor_query(parts)
        ))
        .await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &ReviewsPage {
            frame: viewer.frame("Access reviews", Section::Reviews, parts),
            reviews: list.access_reviews,
            next: list.pagination.next,
            may_review: viewer.may_here(Action::ReviewAccess),
            error,
        },
    ))
}

/// `GET /reviews`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    list_page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /reviews`: a new campaign named by the form (every owner and admin reviews).
async fn open(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                "/api/v1/access-reviews",
                Some(json!({"name": form.get("name")})),
            )
            .await;
        match answer {
            Ok(answer) => {
                let id = answer
                    .data
                    .pointer("/accessReview/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(done(
                    &format!("/reviews/{}", encode(&id)),
                    Outcome::ReviewOpened,
                ))
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => list_page(&console, &parts, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

async fn review_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let review = api
        .get::<ReviewOne>(&format!("/api/v1/access-reviews/{}", encode(id)))
        .await?
        .access_review;
    let items: ItemList = api
        .get(&format!(
            "/api/v1/access-reviews/{}/items?{}",
            encode(id),
            super::sources::cursor_query(parts)
        ))
        .await?;
    let next = items.pagination.next.clone();
    let open = review.status == "OPEN";
    let items = items
        .items
        .into_iter()
        .map(|item| {
            let target = ResourceRef::ReviewItem(ReviewItemRef {
                id: &item.id,
                subject: &item.subject_id,
            });
            let may = open && viewer.may(Action::ReviewAccess, target);
            (item, may)
        })
        .collect();
    let title = review.name.clone();
    Ok(render(
        super::form_status(error.as_deref()),
        &ReviewPage {
            frame: viewer.frame(title, Section::Reviews, parts),
            may_close: open && viewer.may_here(Action::ReviewAccess),
            review,
            items,
            next,
            roles: ["admin", "member", "read_only"],
            levels: ["full", "read_write", "read_only", "no_access"],
            error,
        },
    ))
}

/// `GET /reviews/{id}`.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    review_page(&console, &parts, &id, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /reviews/{id}/items/{item}`: `decision` (`keep`, `revoke`, or `change` with
/// `role` or `level`) and `note`.
async fn decide(
    State(console): State<Console>,
    Path((id, item)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let decided = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!(
                    "/api/v1/access-reviews/{}/items/{}/decision",
                    encode(&id),
                    encode(&item)
                ),
                Some(decision(&form)),
            )
            .await;
        match answer {
            Ok(_) => Ok(done(&format!("/reviews/{}", encode(&id)), Outcome::Decided)),
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => review_page(&console, &parts, &id, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    decided.await.unwrap_or_else(IntoResponse::into_response)
}

/// The decision a line's form posts: `keep`, `revoke`, or `change` to the `role` (a role
/// line) or `level` (a grant line) it names.
fn decision(form: &Form) -> Value {
    let mut body = json!({"decision": form.get("decision"), "note": form.get("note")});
    if form.get("decision") == "change" {
        for field in ["role", "level"] {
            if let Some(value) = form.some(field) {
                body[field] = value.into();
            }
        }
    }
    body
}

/// `POST /reviews/{id}/close`.
async fn close(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let closed = async {
        let form = Form::read(&body)?;
        submit(
            &console,
            &parts,
            &form,
            Change::new(
                Method::POST,
                format!("/api/v1/access-reviews/{}/close", encode(&id)),
                None,
            ),
            (&format!("/reviews/{}", encode(&id)), Outcome::ReviewClosed),
            Some(|why| review_page(&console, &parts, &id, Some(why))),
        )
        .await
    };
    closed.await.unwrap_or_else(IntoResponse::into_response)
}

/// An API Markdown report, downloaded as `name`.
async fn markdown(
    console: &Console,
    parts: &Parts,
    path: &str,
    name: &str,
) -> Result<Response, Refusal> {
    Viewer::of(console, parts).await?;
    let mut report = inner(console, parts).raw(path).await?;
    let headers = report.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/markdown; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(report)
}

/// `GET /reviews/{id}/evidence.md`: the campaign's evidence record.
async fn review_evidence(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
) -> Response {
    let path = format!(
        "/api/v1/access-reviews/{}/evidence?format=markdown",
        encode(&id)
    );
    markdown(&console, &parts, &path, "access-review-evidence.md")
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /evidence/workspace.md`: who holds what in the workspace, and how it came.
async fn workspace_evidence(State(console): State<Console>, parts: Parts) -> Response {
    markdown(
        &console,
        &parts,
        "/api/v1/evidence/workspace?format=markdown",
        "workspace-access-evidence.md",
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
