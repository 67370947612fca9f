//! `/team/{id}`: one person's access (role, their grants and their groups' grants,
//! elevations) with the **effective access** question answered by the explain API;
//! granting a level on a source or destination, taking a grant away; and offboarding,
//! its plan (a dry run) shown before it is carried out.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::elevations::{Elevation, ElevationList};
use super::form::Form;
use super::sources::encode;
use super::team::about_the_form;
use super::{Change, one_change, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use crate::control::api::offboarding::OffboardingReport;
use crate::control::policy::Action;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/team/{id}", get(read))
        .route("/team/{id}/grants", post(grant))
        .route("/team/{id}/grants/{grant}/remove", post(remove_grant))
        .route("/team/{id}/offboard", post(offboard))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Person {
    id: String,
    email: String,
    name: String,
    role: String,
    active: bool,
    origin: String,
    last_login: Option<When>,
}

#[derive(Debug, Deserialize)]
struct PersonOne {
    user: Person,
}

/// A grant as the API shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub(super) id: String,
    principal: Holder,
    resource: Value,
    pub(super) level: String,
    pub(super) justification: String,
    expires_at: Option<When>,
}

/// Who holds a grant.
#[derive(Debug, Deserialize)]
pub struct Holder {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

impl Grant {
    /// Whether `kind` (`user` or `group`) `id` holds it.
    pub fn held_by(&self, kind: &str, id: &str) -> bool {
        self.principal.kind == kind && self.principal.id == id
    }

    /// What it applies to, in words.
    pub fn target(&self) -> String {
        let text = |k: &str| self.resource.get(k).and_then(Value::as_str).unwrap_or("");
        match text("kind") {
            "source" => format!("source {}", text("id")),
            "destination" => format!("destination {}", text("id")),
            "source_label" => format!("sources labelled {}: {}", text("key"), text("value")),
            other => other.to_owned(),
        }
    }
}

/// Every grant of the workspace.
#[derive(Debug, Deserialize)]
pub struct GrantList {
    /// The grants.
    pub grants: Vec<Grant>,
}

/// The grant a form asks for `principal` (`{"type", "id"}`): a level on a source, a
/// destination, or the sources carrying a label (`key:value` in the form's `resource`).
pub fn grant_request(form: &Form, principal: Value) -> Value {
    let resource = match form.get("kind") {
        "source_label" => {
            let (key, value) = form
                .get("resource")
                .split_once(':')
                .unwrap_or((form.get("resource"), ""));
            json!({"kind": "source_label", "key": key.trim(), "value": value.trim()})
        }
        kind => json!({"kind": kind, "id": form.get("resource")}),
    };
    let mut request = json!({
        "principal": principal,
        "resource": resource,
        "level": form.get("level"),
    });
    if let Some(why) = form.some("justification") {
        request["justification"] = why.into();
    }
    request
}

#[derive(Debug, Deserialize)]
struct Group {
    id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct GroupList {
    groups: Vec<Group>,
}

/// The explain API's answer.
#[derive(Debug, Deserialize)]
struct Explanation {
    allowed: bool,
    reason: String,
    rules: Vec<Value>,
}

impl Explanation {
    /// Each rule consulted, in words: its name, then its other fields.
    fn steps(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|rule| match rule {
                Value::Object(map) => {
                    let name = map.get("rule").and_then(Value::as_str).unwrap_or("rule");
                    let rest: Vec<String> = map
                        .iter()
                        .filter(|(k, _)| *k != "rule")
                        .map(|(k, v)| match v {
                            Value::String(s) => format!("{k} {s}"),
                            other => format!("{k} {other}"),
                        })
                        .collect();
                    if rest.is_empty() {
                        name.replace('_', " ")
                    } else {
                        format!("{}: {}", name.replace('_', " "), rest.join(", "))
                    }
                }
                other => other.to_string(),
            })
            .collect()
    }
}

/// The question asked of explain.
struct Question {
    action: String,
    resource_type: String,
    resource_id: String,
}

#[derive(Template)]
#[template(path = "console/person.html")]
struct PersonPage {
    frame: Frame,
    person: Person,
    own: Vec<Grant>,
    through_groups: Vec<(String, Grant)>,
    groups: Vec<Group>,
    /// Their temporary access: asked, live and ended.
    elevations: Vec<Elevation>,
    may_manage: bool,
    actions: Vec<String>,
    question: Option<Question>,
    answer: Option<Explanation>,
    members: Vec<(String, String)>,
    /// An offboarding's plan (dry run) or report.
    plan: Option<OffboardingReport>,
    successor: String,
    error: Option<String>,
}

async fn page(
    console: &Console,
    parts: &Parts,
    id: &str,
    plan: Option<(OffboardingReport, String)>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let person = api
        .get::<PersonOne>(&format!("/api/v1/users/{}", encode(id)))
        .await?
        .user;
    let may_manage = viewer.may_here(Action::ManageMembers);
    let (mut own, mut through_groups, mut groups, mut members, mut elevations) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if may_manage {
        let query = serde_urlencoded::to_string([
            ("userId", person.id.as_str()),
            ("pagination[count]", "50"),
        ])
        .unwrap_or_default();
        elevations = api
            .get::<ElevationList>(&format!("/api/v1/elevations?{query}"))
            .await?
            .elevations;
        groups = api
            .get::<GroupList>(&format!("/api/v1/users/{}/groups", encode(id)))
            .await?
            .groups;
        for grant in api.get::<GrantList>("/api/v1/grants").await?.grants {
            if grant.held_by("user", &person.id) {
                own.push(grant);
            } else if grant.principal.kind == "group"
                && let Some(group) = groups.iter().find(|g| g.id == grant.principal.id)
            {
                through_groups.push((group.name.clone(), grant));
            }
        }
        members = api
            .get::<Value>("/api/v1/users?pagination%5Bcount%5D=200")
            .await?
            .get("users")
            .and_then(Value::as_array)
            .map(|users| {
                users
                    .iter()
                    .filter(|u| u["id"] != person.id.as_str() && u["active"] == true)
                    .filter_map(|u| {
                        Some((
                            u["id"].as_str()?.to_owned(),
                            u["email"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    // Effective access: the explain API's answer to the question the page's form asks.
    let value = |name: &str| {
        super::query_value(parts, name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let question = Some(Question {
        action: value("action"),
        resource_type: value("resourceType"),
        resource_id: value("resourceId"),
    })
    .filter(|q| !q.action.is_empty());
    let answer = match &question {
        Some(q) => {
            let mut query = vec![("userId", person.id.clone()), ("action", q.action.clone())];
            if !q.resource_type.is_empty() {
                query.push(("resourceType", q.resource_type.clone()));
            }
            if !q.resource_id.is_empty() {
                query.push(("resourceId", q.resource_id.clone()));
            }
            let path = format!(
                "/api/v1/access/explain?{}",
                serde_urlencoded::to_string(query).unwrap_or_default()
            );
            Some(api.get::<Explanation>(&path).await?)
        }
        None => None,
    };
    let (plan, successor) = match plan {
        Some((plan, successor)) => (Some(plan), successor),
        None => (None, String::new()),
    };
    let title = person.email.clone();
    Ok(render(
        super::form_status(error.as_deref()),
        &PersonPage {
            frame: viewer.frame(title, Section::Team, parts),
            person,
            own,
            through_groups,
            groups,
            elevations,
            may_manage,
            actions: Action::ALL.iter().map(|a| a.name()).collect(),
            question,
            answer,
            members,
            plan,
            successor,
            error,
        },
    ))
}

/// `GET /team/{id}` (`?action=&resourceType=&resourceId=` asks explain).
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    page(&console, &parts, &id, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /team/{id}/grants`: a level on a source or destination.
async fn grant(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let request = grant_request(&form, json!({"type": "user", "id": id}));
        submit(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/grants", Some(request)),
            (&format!("/team/{}", encode(&id)), Outcome::Granted),
            Some(|message| page(&console, &parts, &id, None, Some(message))),
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /team/{id}/grants/{grant}/remove`.
async fn remove_grant(
    State(console): State<Console>,
    Path((id, grant)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/grants/{}", encode(&grant));
    one_change(
        &console,
        &parts,
        &body,
        (&format!("/team/{}", encode(&id)), Outcome::GrantRemoved),
        |_| Ok(Change::new(Method::DELETE, path, None)),
    )
    .await
}

/// `POST /team/{id}/offboard`: `successor`, and `confirm=yes` to carry out the plan;
/// without it, the plan (a dry run: nothing changes).
async fn offboard(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let answer = async {
        let form = Form::read(&body)?;
        let successor = form.get("successor").to_owned();
        let carry_out = form.get("confirm") == "yes";
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!("/api/v1/users/{}/offboard", encode(&id)),
                Some(json!({"successorId": successor, "dryRun": !carry_out})),
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(refusal) => {
                return match about_the_form(&refusal) {
                    Some(message) => page(&console, &parts, &id, None, Some(message)).await,
                    None => Err(refusal),
                };
            }
        };
        if carry_out {
            return Ok(done("/team", Outcome::Offboarded));
        }
        let plan: OffboardingReport = serde_json::from_value(
            answer
                .data
                .get("offboarding")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(|_| Refusal::Broken)?;
        page(&console, &parts, &id, Some((plan, successor)), None).await
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
