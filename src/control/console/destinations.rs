//! `/destinations`: the destinations the viewer may see, one destination's settings
//! (secrets redacted, as the API shows them; revealed only to those who may see its
//! credentials, and that read is the API's, audited), and enabling or disabling one.

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
use super::sources::{Source, cursor_query, encode};
use super::{Change, NO_FORM, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, inner, render};
use crate::control::policy::{Action, DestinationRef, ResourceRef, SourceRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/destinations", get(list))
        .route("/destinations/{id}", get(read))
        .route("/destinations/{id}/reveal", post(reveal))
        .route("/destinations/{id}/enabled", post(set_enabled))
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
}

/// A destination as the console shows it.
#[derive(Debug, Deserialize)]
struct Destination {
    id: String,
    name: String,
    enabled: bool,
    #[serde(default)]
    sources: Vec<String>,
    metadata: Metadata,
    #[serde(default)]
    settings: Value,
}

impl Destination {
    /// Its settings as `(name, value)` rows, values as JSON text.
    fn rows(settings: &Value) -> Vec<(String, String)> {
        match settings {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct DestinationList {
    destinations: Vec<Destination>,
    pagination: super::team::Pagination,
}

#[derive(Debug, Deserialize)]
struct DestinationOne {
    destination: Destination,
}

#[derive(Debug, Deserialize)]
struct SourceOne {
    source: Source,
}

#[derive(Template)]
#[template(path = "console/destinations.html")]
struct ListPage {
    frame: Frame,
    destinations: Vec<Destination>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/destination.html")]
struct DestinationPage {
    frame: Frame,
    destination: Destination,
    settings: Vec<(String, String)>,
    revealed: bool,
    may_reveal: bool,
    may_enable: bool,
}

/// `GET /destinations`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let list: DestinationList = inner(&console, &parts)
            .get(&format!("/api/v1/destinations?{}", cursor_query(&parts)))
            .await?;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &ListPage {
                frame: viewer.frame("Destinations", Section::Destinations, &parts),
                destinations: list.destinations,
                next: list.pagination.next,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

/// Connected sources read for one destination page.
const CONNECTED_READ: usize = 20;

/// `GET /destinations/{id}`: the settings with secrets redacted.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    destination_page(console, parts, id, false).await
}

/// `POST /destinations/{id}/reveal`: the same page with the credentials, for who may
/// see them (the API decides, and audits the read). A post from this session's own
/// page only: a link elsewhere reveals nothing in anyone's name.
async fn reveal(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let checked = async {
        let form = Form::read(&body)?;
        Viewer::of(&console, &parts)
            .await?
            .guard(&parts, &console, form.csrf())
    };
    match checked.await {
        Ok(()) => destination_page(console, parts, id, true).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn destination_page(console: Console, parts: Parts, id: String, reveal: bool) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let api = inner(&console, &parts);
        let destination = api
            .get::<DestinationOne>(&format!("/api/v1/destinations/{}", encode(&id)))
            .await?
            .destination;
        // What the decision rests on: the connected sources the viewer sees, with labels
        // (at most `CONNECTED_READ` of them; a refused read stops the reading).
        let mut labels = Vec::new();
        for source in destination.sources.iter().take(CONNECTED_READ) {
            match api
                .get::<SourceOne>(&format!("/api/v1/sources/{}", encode(source)))
                .await
            {
                Ok(one) => labels.push((one.source.id().to_owned(), one.source.label_pairs())),
                Err(_) => break,
            }
        }
        let connected: Vec<SourceRef<'_>> = labels
            .iter()
            .map(|(id, labels)| SourceRef { id, labels })
            .collect();
        let target = ResourceRef::Destination(DestinationRef {
            id: &destination.id,
            connected: &connected,
        });
        let may_reveal = viewer.may(Action::ViewDestinationSecrets, target);
        let may_enable = viewer.may(Action::EnableDestination, target);
        let settings = if reveal {
            let credentials: Value = api
                .get(&format!("/api/v1/destinations/{}/credentials", encode(&id)))
                .await?;
            Destination::rows(credentials.get("settings").unwrap_or(&Value::Null))
        } else {
            Destination::rows(&destination.settings)
        };
        let title = destination.name.clone();
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &DestinationPage {
                frame: viewer.frame(title, Section::Destinations, &parts),
                destination,
                settings,
                revealed: reveal,
                may_reveal,
                may_enable,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /destinations/{id}/enabled`: `enabled=true|false`.
async fn set_enabled(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        submit(
            &console,
            &parts,
            &form,
            Change::new(
                Method::PATCH,
                format!("/api/v1/destinations/{}", encode(&id)),
                Some(json!({"enabled": form.get("enabled") == "true"})),
            ),
            (
                &format!("/destinations/{}", encode(&id)),
                Outcome::DestinationChanged,
            ),
            NO_FORM,
        )
        .await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}
