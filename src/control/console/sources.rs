//! `/sources`: the sources the viewer may see, one source's page (labels, tracking plan,
//! write keys, connected destinations), a new write key (shown once), revoking a key,
//! enabling or disabling a source, and creating one.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::form::Form;
use super::{Change, one_change};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};
use super::{Secret, shown_once};
use crate::control::policy::{Action, ResourceRef, SourceRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/sources", get(list).post(create))
        .route("/sources/{id}", get(read))
        .route("/sources/{id}/enabled", post(set_enabled))
        .route("/sources/{id}/plan", post(set_plan))
        .route("/sources/{id}/labels", post(set_labels))
        .route("/sources/{id}/keys", post(new_key))
        .route("/sources/{id}/keys/{key}/revoke", post(revoke_key))
        .route("/sources/{id}/delete", post(remove))
}

/// A label as the API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    key: String,
    value: String,
}

/// A source as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    id: String,
    name: String,
    slug: String,
    enabled: bool,
    #[serde(default)]
    write_keys: Vec<String>,
    #[serde(default)]
    labels: Vec<Label>,
    tracking_plan_id: Option<String>,
    enforcement: String,
}

impl Source {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its labels as `(key, value)` pairs, as the policy reads them.
    pub fn label_pairs(&self) -> Vec<(String, String)> {
        self.labels()
    }

    fn labels(&self) -> Vec<(String, String)> {
        self.labels
            .iter()
            .map(|l| (l.key.clone(), l.value.clone()))
            .collect()
    }

    /// `key: value, …` for the page.
    fn label_text(&self) -> String {
        self.labels
            .iter()
            .map(|l| format!("{}: {}", l.key, l.value))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A page of sources.
#[derive(Debug, Deserialize)]
pub struct SourceList {
    /// The sources the viewer may see.
    pub sources: Vec<Source>,
    /// Paging.
    pub pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
struct SourceRead {
    source: Source,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteKey {
    id: String,
    display: String,
    created_at: When,
    expires_at: Option<When>,
    revoked_at: Option<When>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WriteKeyList {
    write_keys: Vec<WriteKey>,
}

#[derive(Debug, Deserialize)]
struct Destination {
    id: String,
    name: String,
    enabled: bool,
}

#[derive(Debug, Deserialize)]
struct DestinationList {
    destinations: Vec<Destination>,
}

#[derive(Template)]
#[template(path = "console/sources.html")]
struct ListPage {
    frame: Frame,
    sources: Vec<Source>,
    next: Option<String>,
    may_create: bool,
}

/// A minute of a source's last hour.
#[derive(Debug, Deserialize)]
struct Minute {
    accepted: u64,
    refused: u64,
    violating: u64,
}

/// A source's last hour, a minute at a time, as the API counts it.
#[derive(Debug, Deserialize)]
struct Recent {
    minutes: Vec<Minute>,
    accepted: u64,
    refused: u64,
    violating: u64,
}

/// The live numbers' chart, in SVG units.
const CHART_WIDTH: u64 = 360;
const CHART_HEIGHT: u64 = 60;

/// A bar of the chart: `x`, `y`, `height`, and what it says.
struct Bar {
    x: u64,
    y: u64,
    height: u64,
    label: String,
}

impl Recent {
    /// Events accepted a second over the last complete minute.
    fn per_second(&self) -> String {
        let len = self.minutes.len();
        let last_full = len.checked_sub(2).and_then(|i| self.minutes.get(i));
        format!("{:.1}", last_full.map_or(0.0, |m| m.accepted as f64 / 60.0))
    }

    /// One bar a minute (accepted events), scaled to the busiest minute.
    fn bars(&self) -> Vec<Bar> {
        let most = self
            .minutes
            .iter()
            .map(|m| m.accepted)
            .max()
            .unwrap_or(0)
            .max(1);
        let n = self.minutes.len() as u64;
        self.minutes
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let height = (m.accepted * CHART_HEIGHT / most).max(u64::from(m.accepted > 0));
                Bar {
                    x: i as u64 * CHART_WIDTH / n.max(1),
                    y: CHART_HEIGHT - height,
                    height,
                    label: format!(
                        "{} min ago: {} accepted, {} refused, {} violating",
                        n - 1 - i as u64,
                        m.accepted,
                        m.refused,
                        m.violating
                    ),
                }
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "console/source.html")]
struct SourcePage {
    frame: Frame,
    source: Source,
    keys: Option<Vec<WriteKey>>,
    destinations: Vec<Destination>,
    may_keys: bool,
    may_edit: bool,
    may_label: bool,
    may_delete: bool,
    /// The last hour's numbers (none when they could not be read).
    recent: Option<Recent>,
    chart: (u64, u64),
    /// The tracking plans the viewer may pick from: `(id, name)`.
    plans: Vec<(String, String)>,
    /// A key made just now: shown on this answer only.
    new_key: Option<String>,
}

/// The cursor a list page asks for (`?cursor=`), as the API's query.
pub fn cursor_query(parts: &Parts) -> String {
    let cursor = super::query_value(parts, "cursor");
    let mut pairs = vec![("pagination[count]", "100".to_owned())];
    if let Some(cursor) = cursor {
        pairs.push(("pagination[cursor]", cursor));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `GET /sources`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    list_page(&console, &parts)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn list_page(console: &Console, parts: &Parts) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let path = format!("/api/v1/sources?{}", cursor_query(parts));
    let list: SourceList = inner(console, parts).get(&path).await?;
    Ok(render(
        StatusCode::OK,
        &ListPage {
            frame: viewer.frame("Sources", Section::Sources, parts),
            sources: list.sources,
            next: list.pagination.next,
            may_create: viewer.may_here(Action::CreateSource),
        },
    ))
}

/// `POST /sources`: a new source named by the form.
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let request = json!({"slug": form.get("slug"), "name": form.some("name")});
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::POST, "/api/v1/sources", Some(request))
            .await?;
        let id = answer
            .data
            .pointer("/source/id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok::<_, Refusal>(done(
            &format!("/sources/{}", encode(&id)),
            Outcome::SourceCreated,
        ))
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// A path segment, percent-encoded.
pub fn encode(segment: &str) -> String {
    serde_urlencoded::to_string([("", segment)])
        .map(|s| s.trim_start_matches('=').replace('+', "%20"))
        .unwrap_or_default()
}

async fn source_page(
    console: &Console,
    parts: &Parts,
    id: &str,
    new_key: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let read: SourceRead = api.get(&format!("/api/v1/sources/{}", encode(id))).await?;
    let source = read.source;
    let labels = source.labels();
    let seen = ResourceRef::Source(SourceRef {
        id: &source.id,
        labels: &labels,
    });
    let may_keys = viewer.may(Action::ManageWriteKeys, seen);
    let may_edit = viewer.may(Action::EditSource, seen);
    let keys = if may_keys {
        let list: WriteKeyList = api
            .get(&format!("/api/v1/sources/{}/writekeys", encode(id)))
            .await?;
        Some(list.write_keys)
    } else {
        None
    };
    let plans = if may_edit {
        api.get::<serde_json::Value>("/api/v1/tracking-plans?pagination%5Bcount%5D=200")
            .await
            .ok()
            .and_then(|v| v.get("trackingPlans").and_then(|p| p.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?.to_owned(), p["name"].as_str()?.to_owned())))
            .collect()
    } else {
        Vec::new()
    };
    let may_label = viewer.may(Action::EditSource, seen);
    let may_delete = viewer.may(Action::DeleteSource, seen);
    let recent = api
        .get::<Recent>(&format!("/api/v1/sources/{}/usage/recent", encode(id)))
        .await
        .ok();
    let destinations = api
        .get::<DestinationList>(&format!(
            "/api/v1/sources/{}/connected-destinations",
            encode(id)
        ))
        .await
        .map(|l| l.destinations)
        .unwrap_or_default();
    let title = source.name.clone();
    Ok(render(
        StatusCode::OK,
        &SourcePage {
            frame: viewer.frame(title, Section::Sources, parts),
            source,
            keys,
            destinations,
            may_keys,
            may_edit,
            may_label,
            may_delete,
            recent,
            chart: (CHART_WIDTH, CHART_HEIGHT),
            plans,
            new_key,
        },
    ))
}

/// `GET /sources/{id}`.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    source_page(&console, &parts, &id, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

const NEW_KEY: Secret = Secret {
    title: "New write key",
    note: "Copy it now: Sluice keeps only its digest and will not show it again.",
    element: "write-key",
};

/// `POST /sources/{id}/keys`: a new write key, shown on the page this answers with.
async fn new_key(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::POST,
                &format!("/api/v1/sources/{}/writekey", encode(&id)),
                Some(json!({})),
            )
            .await?;
        if answer.status == StatusCode::ACCEPTED {
            return Ok(done(
                &format!("/sources/{}", encode(&id)),
                Outcome::Proposed,
            ));
        }
        let key = answer
            .data
            .pointer("/writeKey/key")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        shown_once(
            source_page(&console, &parts, &id, key.clone()).await,
            NEW_KEY,
            key,
            &format!("/sources/{}", encode(&id)),
        )
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /sources/{id}/keys/{key}/revoke`.
async fn revoke_key(
    State(console): State<Console>,
    Path((id, key)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::DELETE,
                &format!("/api/v1/sources/{}/writekey/{}", encode(&id), encode(&key)),
                None,
            )
            .await?;
        Ok::<_, Refusal>(done(
            &format!("/sources/{}", encode(&id)),
            Outcome::applied(answer.status, Outcome::KeyRevoked),
        ))
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /sources/{id}/enabled`: `enabled=true|false`.
async fn set_enabled(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        (&format!("/sources/{}", encode(&id)), Outcome::SourceChanged),
        |form| {
            let enabled = form.get("enabled") == "true";
            Ok(Change::new(
                Method::PATCH,
                format!("/api/v1/sources/{}", encode(&id)),
                Some(json!({"enabled": enabled})),
            ))
        },
    )
    .await
}

/// `POST /sources/{id}/plan`: `plan` (blank: none) and `enforcement`.
async fn set_plan(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        (&format!("/sources/{}", encode(&id)), Outcome::SourceChanged),
        |form| {
            let request = json!({
                "trackingPlanId": form.some("plan"),
                "enforcement": form.get("enforcement"),
            });
            Ok(Change::new(
                Method::PATCH,
                format!("/api/v1/sources/{}", encode(&id)),
                Some(request),
            ))
        },
    )
    .await
}

/// `POST /sources/{id}/labels`: `labels`, `key:value` pairs separated by commas (all of
/// the source's labels: the set replaces the old one).
async fn set_labels(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        (&format!("/sources/{}", encode(&id)), Outcome::SourceChanged),
        |form| {
            let mut labels = Vec::new();
            for pair in form
                .get("labels")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let Some((key, value)) = pair.split_once(':') else {
                    return Err(Refusal::Api {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        message: format!("\"{pair}\" is not key:value."),
                    });
                };
                labels.push(json!({"key": key.trim(), "value": value.trim()}));
            }
            Ok(Change::new(
                Method::PUT,
                format!("/api/v1/sources/{}/labels", encode(&id)),
                Some(json!({"labels": labels})),
            ))
        },
    )
    .await
}

/// `POST /sources/{id}/delete`: the source, its write keys and its connections go (the
/// form asks to type the source's id, so that a slip of the mouse deletes nothing).
async fn remove(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/sources", Outcome::SourceDeleted),
        |form| {
            if form.get("confirm") != id {
                return Err(Refusal::Api {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message: "Type the source's id to delete it: nothing was deleted.".into(),
                });
            }
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/sources/{}", encode(&id)),
                None,
            ))
        },
    )
    .await
}
