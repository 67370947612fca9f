//! `/plans` and `/change-requests`: tracking plans (their rules and published version),
//! proposing new rules for review (the rules as JSON, every rule the plan would hold),
//! and change requests with a readable diff, approved (published), rejected or
//! withdrawn.

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
use super::sources::encode;
use super::team::about_the_form;
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use crate::control::policy::{Action, ChangeRequestRef, ResourceRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/plans", get(list).post(create))
        .route("/plans/{id}", get(read))
        .route("/plans/{id}/change-requests", post(propose))
        .route("/change-requests", get(requests))
        .route("/change-requests/{id}", get(request))
        .route("/change-requests/{id}/{verdict}", post(decide))
}

/// A tracking plan as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    id: String,
    name: String,
    description: String,
    version: u32,
    updated_at: When,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanList {
    tracking_plans: Vec<Plan>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlanOne {
    tracking_plan: Plan,
}

#[derive(Debug, Deserialize)]
struct RulePage {
    rules: Vec<Value>,
    pagination: super::team::Pagination,
}

/// A rule, in words: `TYPE key vN`.
fn rule_name(rule: &Value) -> String {
    format!(
        "{} {} v{}",
        rule.get("type").and_then(Value::as_str).unwrap_or("?"),
        rule.get("key").and_then(Value::as_str).unwrap_or("-"),
        rule.get("version").and_then(Value::as_u64).unwrap_or(1)
    )
}

/// A change request as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    id: String,
    tracking_plan_id: String,
    author_id: String,
    description: String,
    status: String,
    base_version: u32,
    stale: bool,
    rule_count: usize,
    created_at: When,
    updated_at: String,
    decided_by: Option<String>,
    comment: String,
    published_version: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestList {
    change_requests: Vec<Request>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestOne {
    change_request: Request,
    diff_text: String,
}

/// A line of a diff and how to show it.
struct DiffLine {
    class: &'static str,
    text: String,
}

fn diff_lines(text: &str) -> Vec<DiffLine> {
    text.lines()
        .map(|line| DiffLine {
            class: match line.trim_start().chars().next() {
                Some('+') => "added",
                Some('-') => "removed",
                Some('~') => "changed",
                _ => "same",
            },
            text: line.to_owned(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/plans.html")]
struct PlansPage {
    frame: Frame,
    plans: Vec<Plan>,
    next: Option<String>,
    may_create: bool,
}

#[derive(Template)]
#[template(path = "console/plan.html")]
struct PlanPage {
    frame: Frame,
    plan: Plan,
    rules: Vec<String>,
    /// Every rule as JSON, for the proposal's text area.
    rules_json: String,
    requests: Vec<Request>,
    /// Its published versions (the change requests that made them), newest first.
    versions: Vec<Request>,
    may_propose: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/change_requests.html")]
struct RequestsPage {
    frame: Frame,
    requests: Vec<Request>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/change_request.html")]
struct RequestPage {
    frame: Frame,
    request: Request,
    diff: Vec<DiffLine>,
    may_review: bool,
    may_amend: bool,
    error: Option<String>,
}

/// `GET /plans`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let list: PlanList = inner(&console, &parts)
            .get(&format!(
                "/api/v1/tracking-plans?{}",
                super::sources::cursor_query(&parts)
            ))
            .await?;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &PlansPage {
                frame: viewer.frame("Tracking plans", Section::Plans, &parts),
                plans: list.tracking_plans,
                next: list.pagination.next,
                may_create: viewer.may_here(Action::EditTrackingPlans),
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /plans`: a new, empty plan named by the form.
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                "/api/v1/tracking-plans",
                Some(json!({"name": form.get("name")})),
            )
            .await?;
        let id = answer
            .data
            .pointer("/trackingPlan/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok::<_, Refusal>(done(
            &format!("/plans/{}", encode(&id)),
            Outcome::PlanCreated,
        ))
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// Most pages of rules read for one plan (200 rules a page).
const RULE_PAGES: usize = 50;

async fn plan_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    draft: Option<(String, String)>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let plan = api
        .get::<PlanOne>(&format!("/api/v1/tracking-plans/{}", encode(id)))
        .await?
        .tracking_plan;
    let mut rules = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..RULE_PAGES {
        let mut query = vec![("pagination[count]", "200".to_owned())];
        if let Some(c) = cursor.take() {
            query.push(("pagination[cursor]", c));
        }
        let page: RulePage = api
            .get(&format!(
                "/api/v1/tracking-plans/{}/rules?{}",
                encode(id),
                serde_urlencoded::to_string(query).unwrap_or_default()
            ))
            .await?;
        rules.extend(page.rules);
        match page.pagination.next {
            Some(next) => cursor = Some(next),
            None => {
                cursor = None;
                break;
            }
        }
    }
    // Never a partial list: proposing it would delete the rules left out.
    if cursor.is_some() {
        tracing::error!(
            plan = id,
            "console: a plan has more rules than the console reads"
        );
        return Err(Refusal::Broken);
    }
    let of_plan = |status: &str, count: &str| {
        format!(
            "/api/v1/change-requests?{}",
            serde_urlencoded::to_string([
                ("trackingPlanId", plan.id.as_str()),
                ("status", status),
                ("pagination[count]", count),
            ])
            .unwrap_or_default()
        )
    };
    let requests: RequestList = api.get(&of_plan("OPEN", "200")).await?;
    // Its versions: the change requests published, newest first.
    let mut versions = api
        .get::<RequestList>(&of_plan("PUBLISHED", "50"))
        .await?
        .change_requests;
    versions.sort_by_key(|v| std::cmp::Reverse(v.published_version));
    let (rules_json, error) = match draft {
        Some((text, error)) => (text, Some(error)),
        None => (
            serde_json::to_string_pretty(&rules).unwrap_or_default(),
            None,
        ),
    };
    let title = plan.name.clone();
    Ok(render(
        super::form_status(error.as_deref()),
        &PlanPage {
            frame: viewer.frame(title, Section::Plans, parts),
            plan,
            rules: rules.iter().map(rule_name).collect(),
            rules_json,
            requests: requests.change_requests,
            versions,
            may_propose: viewer.may_here(Action::EditTrackingPlans),
            error,
        },
    ))
}

/// `GET /plans/{id}`.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    plan_page(&console, &parts, &id, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /plans/{id}/change-requests`: `description` and `rules` (a JSON array of every
/// rule the plan would hold).
async fn propose(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let text = form.raw("rules").to_owned();
        let rules: Value = match serde_json::from_str(&text) {
            Ok(rules @ Value::Array(_)) => rules,
            Ok(_) | Err(_) => {
                // Shown again before any API request checks the form: check it here.
                Viewer::of(&console, &parts)
                    .await?
                    .guard(&parts, &console, form.csrf())?;
                let why = "The rules must be a JSON array of rules.".to_owned();
                return plan_page(&console, &parts, &id, Some((text, why))).await;
            }
        };
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!("/api/v1/tracking-plans/{}/change-requests", encode(&id)),
                Some(json!({"description": form.get("description"), "rules": rules})),
            )
            .await;
        match answer {
            Ok(answer) => {
                let cr = answer
                    .data
                    .pointer("/changeRequest/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Ok(done(
                    &format!("/change-requests/{}", encode(&cr)),
                    Outcome::RequestOpened,
                ))
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => plan_page(&console, &parts, &id, Some((text, why))).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /change-requests` (`?status=` as the API takes it; open ones by default).
async fn requests(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let status = super::query_value(&parts, "status").unwrap_or_else(|| "OPEN".into());
        let list: RequestList = inner(&console, &parts)
            .get(&format!(
                "/api/v1/change-requests?{}&{}",
                serde_urlencoded::to_string([("status", status.as_str())]).unwrap_or_default(),
                super::sources::cursor_query(&parts)
            ))
            .await?;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &RequestsPage {
                frame: viewer.frame("Change requests", Section::Plans, &parts),
                requests: list.change_requests,
                next: list.pagination.next,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

async fn request_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let one: RequestOne = inner(console, parts)
        .get(&format!("/api/v1/change-requests/{}", encode(id)))
        .await?;
    let request = one.change_request;
    let target = ResourceRef::ChangeRequest(ChangeRequestRef {
        id: &request.id,
        author: &request.author_id,
    });
    let open = request.status == "OPEN";
    let may_review = open && viewer.may(Action::ReviewChangeRequest, target);
    let may_amend = open && viewer.may(Action::AmendChangeRequest, target);
    let title = format!("Change request {}", request.id);
    Ok(render(
        super::form_status(error.as_deref()),
        &RequestPage {
            frame: viewer.frame(title, Section::Plans, parts),
            diff: diff_lines(&one.diff_text),
            request,
            may_review,
            may_amend,
            error,
        },
    ))
}

/// `GET /change-requests/{id}`.
async fn request(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    request_page(&console, &parts, &id, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /change-requests/{id}/approve|reject|withdraw`: `comment`, and for an approval
/// the `updatedAt` the reviewer read (a request changed since is not published).
async fn decide(
    State(console): State<Console>,
    Path((id, verdict)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let decided = async {
        let form = Form::read(&body)?;
        let (outcome, request) = match verdict.as_str() {
            "approve" => {
                let mut request = json!({});
                if let Some(read) = form.some("updatedAt") {
                    request["updatedAt"] = read.into();
                }
                if let Some(comment) = form.some("comment") {
                    request["comment"] = comment.into();
                }
                (Outcome::Published, request)
            }
            "reject" => (Outcome::Rejected, json!({"comment": form.get("comment")})),
            "withdraw" => (Outcome::Withdrawn, Value::Null),
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
                &format!("/api/v1/change-requests/{}/{verdict}", encode(&id)),
                Some(request).filter(|r| !r.is_null()),
            )
            .await;
        match answer {
            Ok(_) => Ok(done(&format!("/change-requests/{}", encode(&id)), outcome)),
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => request_page(&console, &parts, &id, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    decided.await.unwrap_or_else(IntoResponse::into_response)
}
