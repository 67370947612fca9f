//! `/destinations`: the destinations the viewer may see and a new one; one destination's
//! settings (secrets redacted, as the API shows them; revealed only to those who may see
//! its credentials, and that read is the API's, audited), editing them, connecting and
//! disconnecting sources, enabling, disabling and deleting it.

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
use super::sources::{Source, SourceList, cursor_query, encode};
use super::team::about_the_form;
use super::{Change, NO_FORM, apply, done, one_change, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, inner, render};
use crate::control::api::destinations::KINDS;
use crate::control::policy::{Action, DestinationRef, ResourceRef, SourceRef};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/destinations", get(list).post(create))
        .route("/destinations/{id}", get(read))
        .route("/destinations/{id}/reveal", post(reveal))
        .route("/destinations/{id}/enabled", post(set_enabled))
        .route("/destinations/{id}/settings", post(edit))
        .route("/destinations/{id}/connect", post(connect))
        .route("/destinations/{id}/disconnect", post(disconnect))
        .route("/destinations/{id}/delete", post(remove))
}

/// What a settings form starts with for a type.
fn example(kind: &str) -> &'static str {
    match kind {
        "file" => "{\n  \"path\": \"events.ndjson\"\n}",
        "nats" => "{\n  \"url\": \"nats://127.0.0.1:4222\",\n  \"subject\": \"events.{source}\"\n}",
        _ => "{\n  \"url\": \"https://example.com/hook\",\n  \"secret\": \"\"\n}",
    }
}

/// A settings form's text read as JSON settings, or why it cannot be. (Settings sent
/// back as the page showed them, credentials still placeholders, are the API's to
/// refuse: it does so for every client.)
fn settings_of(text: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("The settings are not JSON: {e}."))?;
    if !value.is_object() {
        return Err("The settings must be a JSON object ({ … }).".into());
    }
    Ok(value)
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
    /// The new-destination form, for who may create one.
    new: Option<NewForm>,
}

/// The new-destination form: the sources it may start connected to, what was typed, and
/// why it was not made.
struct NewForm {
    /// `(id, name)` of the sources the viewer may connect a destination to.
    sources: Vec<(String, String)>,
    /// The destination types: `(metadataId, name, description)`.
    kinds: &'static [(&'static str, &'static str, &'static str)],
    name: String,
    kind: String,
    source: String,
    settings: String,
    error: Option<String>,
}

/// What the settings form of a destination page shows: the settings as typed, and why
/// they were not saved.
struct EditForm {
    name: String,
    settings: String,
    error: Option<String>,
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
    may_delete: bool,
    /// The settings form, for who may edit the destination.
    edit: Option<EditForm>,
    /// Connected sources the viewer may disconnect: `(id, may)`.
    connected: Vec<(String, bool)>,
    /// `(id, name)` of the sources the viewer may connect it to.
    connectable: Vec<(String, String)>,
}

/// `GET /destinations`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    list_page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn list_page(
    console: &Console,
    parts: &Parts,
    typed: Option<NewForm>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let api = inner(console, parts);
    let list: DestinationList = api
        .get(&format!("/api/v1/destinations?{}", cursor_query(parts)))
        .await?;
    let new = if viewer.may_here(Action::CreateDestination) {
        let sources = connectable(console, parts, &viewer, "").await;
        let form = typed.unwrap_or_else(|| NewForm {
            sources: Vec::new(),
            kinds: &KINDS,
            name: String::new(),
            kind: "webhook".into(),
            source: String::new(),
            settings: example("webhook").into(),
            error: None,
        });
        Some(NewForm { sources, ..form })
    } else {
        None
    };
    let error = new.as_ref().and_then(|n| n.error.as_deref());
    Ok(render(
        super::form_status(error),
        &ListPage {
            frame: viewer.frame("Destinations", Section::Destinations, parts),
            destinations: list.destinations,
            next: list.pagination.next,
            new,
        },
    ))
}

/// Sources read for a form's choice of source.
const SOURCES_READ: usize = 100;

/// `(id, name)` of the sources (of the first [`SOURCES_READ`] the viewer sees) that
/// destination `destination` may be connected to by the viewer (`""`: a new one).
async fn connectable(
    console: &Console,
    parts: &Parts,
    viewer: &Viewer,
    destination: &str,
) -> Vec<(String, String)> {
    let path = format!("/api/v1/sources?pagination%5Bcount%5D={SOURCES_READ}");
    let Ok(list) = inner(console, parts).get::<SourceList>(&path).await else {
        return Vec::new();
    };
    list.sources
        .iter()
        .filter(|s| {
            let labels = s.label_pairs();
            let both = ResourceRef::Connection(
                SourceRef {
                    id: s.id(),
                    labels: &labels,
                },
                DestinationRef {
                    id: destination,
                    connected: &[],
                },
            );
            viewer.may(Action::Connect, both)
        })
        .map(|s| (s.id().to_owned(), s.name().to_owned()))
        .collect()
}

/// `POST /destinations`: name, type, first source and settings (JSON).
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let typed = |error: String| NewForm {
            sources: Vec::new(),
            kinds: &KINDS,
            name: form.get("name").to_owned(),
            kind: form.get("type").to_owned(),
            source: form.get("source").to_owned(),
            settings: form.raw("settings").to_owned(),
            error: Some(error),
        };
        let settings = match settings_of(form.raw("settings")) {
            Ok(settings) => settings,
            // Shown again as typed: only to this session's own page.
            Err(why) => {
                Viewer::of(&console, &parts)
                    .await?
                    .guard(&parts, &console, form.csrf())?;
                return list_page(&console, &parts, Some(typed(why))).await;
            }
        };
        let request = json!({
            "name": form.some("name"),
            "metadataId": form.get("type"),
            "sourceId": form.get("source"),
            "settings": settings,
        });
        match apply(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/destinations", Some(request)),
        )
        .await
        {
            Ok(answer) if answer.status == StatusCode::ACCEPTED => {
                Ok(done("/destinations", Outcome::Proposed))
            }
            Ok(answer) => {
                let id = answer
                    .data
                    .pointer("/destination/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(done(
                    &format!("/destinations/{}", encode(id)),
                    Outcome::DestinationCreated,
                ))
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => list_page(&console, &parts, Some(typed(why))).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// Connected sources read for one destination page.
const CONNECTED_READ: usize = 20;

/// `GET /destinations/{id}`: the settings with secrets redacted.
async fn read(State(console): State<Console>, Path(id): Path<String>, parts: Parts) -> Response {
    destination_page(console, parts, id, None, None).await
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
            .guard(&parts, &console, form.csrf())?;
        Ok::<_, Refusal>(form.csrf().to_owned())
    };
    match checked.await {
        Ok(csrf) => destination_page(console, parts, id, Some(csrf), None).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// One destination's page; with `reveal` (the form's CSRF token, which the API checks
/// for the audited read), its credentials shown.
async fn destination_page(
    console: Console,
    parts: Parts,
    id: String,
    reveal: Option<String>,
    typed: Option<EditForm>,
) -> Response {
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
        let may_delete = viewer.may(Action::DeleteDestination, target);
        // A change of connections is an edit of the destination as well.
        let may_edit = viewer.may(Action::EditDestination, target);
        let disconnectable: Vec<(String, bool)> = destination
            .sources
            .iter()
            .map(|source| {
                let may = may_edit
                    && connected.iter().find(|s| s.id == source).is_some_and(|s| {
                        viewer.may(
                            Action::Disconnect,
                            ResourceRef::Connection(
                                *s,
                                DestinationRef {
                                    id: &destination.id,
                                    connected: &[],
                                },
                            ),
                        )
                    });
                (source.clone(), may)
            })
            .collect();
        let edit = may_edit.then(|| {
            typed.unwrap_or_else(|| EditForm {
                name: destination.name.clone(),
                settings: serde_json::to_string_pretty(&destination.settings).unwrap_or_default(),
                error: None,
            })
        });
        let mut connectable = if may_edit {
            connectable(&console, &parts, &viewer, &destination.id).await
        } else {
            Vec::new()
        };
        connectable.retain(|(source, _)| !destination.sources.contains(source));
        let status = super::form_status(edit.as_ref().and_then(|e| e.error.as_deref()));
        let revealed = reveal.is_some();
        let settings = if let Some(csrf) = &reveal {
            let credentials: Value = inner(&console, &parts)
                .with_csrf(csrf)
                .get(&format!("/api/v1/destinations/{}/credentials", encode(&id)))
                .await?;
            Destination::rows(credentials.get("settings").unwrap_or(&Value::Null))
        } else {
            Destination::rows(&destination.settings)
        };
        let title = destination.name.clone();
        Ok::<_, Refusal>(render(
            status,
            &DestinationPage {
                frame: viewer.frame(title, Section::Destinations, &parts),
                destination,
                settings,
                revealed,
                may_reveal,
                may_enable,
                may_delete,
                edit,
                connected: disconnectable,
                connectable,
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
    one_change(
        &console,
        &parts,
        &body,
        (
            &format!("/destinations/{}", encode(&id)),
            Outcome::DestinationChanged,
        ),
        |form| {
            Ok(Change::new(
                Method::PATCH,
                format!("/api/v1/destinations/{}", encode(&id)),
                Some(json!({"enabled": form.get("enabled") == "true"})),
            ))
        },
    )
    .await
}

/// `POST /destinations/{id}/settings`: name and settings (JSON; they replace the old
/// ones, secrets included).
async fn edit(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let Ok(form) = Form::read(&body) else {
        return Refusal::Api {
            status: StatusCode::BAD_REQUEST,
            message: "The form could not be read.".into(),
        }
        .into_response();
    };
    let typed = |error: String| EditForm {
        name: form.get("name").to_owned(),
        settings: form.raw("settings").to_owned(),
        error: Some(error),
    };
    let settings = match settings_of(form.raw("settings")) {
        Ok(settings) => settings,
        // Shown again as typed: only to this session's own page.
        Err(why) => {
            let checked = async {
                Viewer::of(&console, &parts)
                    .await?
                    .guard(&parts, &console, form.csrf())
            };
            if let Err(refusal) = checked.await {
                return refusal.into_response();
            }
            return destination_page(console, parts, id, None, Some(typed(why))).await;
        }
    };
    let change = Change::new(
        Method::PATCH,
        format!("/api/v1/destinations/{}", encode(&id)),
        Some(json!({"name": form.get("name"), "settings": settings})),
    );
    let back = format!("/destinations/{}", encode(&id));
    match apply(&console, &parts, &form, change).await {
        Ok(answer) => done(
            &back,
            Outcome::applied(answer.status, Outcome::DestinationChanged),
        ),
        Err(refusal) => match about_the_form(&refusal) {
            Some(why) => destination_page(console, parts, id, None, Some(typed(why))).await,
            None => refusal.into_response(),
        },
    }
}

/// `POST /destinations/{id}/connect`: `source`, connected besides those it has.
async fn connect(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    relink(console, id, parts, body, true).await
}

/// `POST /destinations/{id}/disconnect`: `source`, no longer connected.
async fn disconnect(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    relink(console, id, parts, body, false).await
}

/// The destination's sources with the form's `source` added or taken away, as one
/// update of its connections (the API keeps those the viewer may not see).
async fn relink(console: Console, id: String, parts: Parts, body: Bytes, add: bool) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let source = form.get("source").to_owned();
        let path = format!("/api/v1/destinations/{}", encode(&id));
        let mut sources = inner(&console, &parts)
            .get::<DestinationOne>(&path)
            .await?
            .destination
            .sources;
        sources.retain(|s| *s != source);
        if add {
            sources.push(source);
        }
        submit(
            &console,
            &parts,
            &form,
            Change::new(Method::PATCH, path, Some(json!({"sources": sources}))),
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

/// `POST /destinations/{id}/delete`.
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
        ("/destinations", Outcome::DestinationDeleted),
        |_form| {
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/destinations/{}", encode(&id)),
                None,
            ))
        },
    )
    .await
}
