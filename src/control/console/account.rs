//! `/account`: the viewer's own sessions (where and how each was opened, when it was
//! last used), ending one, and "sign out everywhere else".

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::form::Form;
use super::sources::encode;
use super::{Change, NO_FORM, submit};
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, When, done, inner, render};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/account", get(read))
        .route("/account/sessions/end-others", post(end_others))
        .route("/account/sessions/{id}/end", post(end_one))
        .route("/account/password", post(set_password))
}

/// A session as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    id: String,
    current: bool,
    method: String,
    created_at: When,
    last_seen_at: When,
    ip: String,
    user_agent: String,
}

#[derive(Debug, Deserialize)]
struct SessionList {
    sessions: Vec<Session>,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage {
    frame: Frame,
    sessions: Vec<Session>,
    /// Why the password form's change was not made.
    error: Option<String>,
}

async fn page(
    console: &Console,
    parts: &Parts,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let list: SessionList = inner(console, parts).get("/auth/sessions").await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &AccountPage {
            frame: viewer.frame("Your account", Section::Account, parts),
            sessions: list.sessions,
            error,
        },
    ))
}

/// `GET /account`.
async fn read(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/password`: the current password (when one is set) and a new one.
/// Every other session of the viewer's ends, as the API does.
async fn set_password(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let changed = async {
        let form = Form::read(&body)?;
        if form.raw("new_password") != form.raw("repeat_password") {
            return page(
                &console,
                &parts,
                Some("The two new passwords differ.".into()),
            )
            .await;
        }
        let mut request = serde_json::json!({"newPassword": form.raw("new_password")});
        if !form.raw("current_password").is_empty() {
            request["currentPassword"] = form.raw("current_password").into();
        }
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::PUT, "/auth/password", Some(request))
            .await;
        match answer {
            Ok(_) => Ok(done("/account", Outcome::PasswordSet)),
            Err(refusal) => match super::team::about_the_form(&refusal) {
                Some(message) => page(&console, &parts, Some(message)).await,
                None => Err(refusal),
            },
        }
    };
    changed.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/sessions/end-others`: every other session of the viewer's ends.
async fn end_others(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let ended = async {
        let form = Form::read(&body)?;
        inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::POST, "/auth/sessions/end-others", None)
            .await?;
        Ok::<_, Refusal>(done("/account", Outcome::SessionsEnded))
    };
    ended.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /account/sessions/{id}/end`: one of the viewer's sessions ends.
async fn end_one(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let ended = async {
        let form = Form::read(&body)?;
        submit(
            &console,
            &parts,
            &form,
            Change::new(
                Method::DELETE,
                format!("/auth/sessions/{}", encode(&id)),
                None,
            ),
            ("/account", Outcome::SessionEnded),
            NO_FORM,
        )
        .await
    };
    ended.await.unwrap_or_else(IntoResponse::into_response)
}
