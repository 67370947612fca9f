//! `/account`: the viewer's own sessions (where and how each was opened, when it was
//! last used), ending one, and "sign out everywhere else".

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::form::Form;
use super::sources::encode;
use super::{Console, Frame, Outcome, Refusal, Section, Viewer, done, inner, render};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/account", get(read))
        .route("/account/sessions/end-others", post(end_others))
        .route("/account/sessions/{id}/end", post(end_one))
}

/// A session as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    id: String,
    current: bool,
    method: String,
    created_at: String,
    last_seen_at: String,
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
}

/// `GET /account`.
async fn read(State(console): State<Console>, parts: Parts) -> Response {
    let page = async {
        let viewer = Viewer::of(&console, &parts).await?;
        let list: SessionList = inner(&console, &parts).get("/auth/sessions").await?;
        Ok::<_, Refusal>(render(
            StatusCode::OK,
            &AccountPage {
                frame: viewer.frame("Your account", Section::Account, &parts),
                sessions: list.sessions,
            },
        ))
    };
    page.await.unwrap_or_else(IntoResponse::into_response)
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
        inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(
                Method::DELETE,
                &format!("/auth/sessions/{}", encode(&id)),
                None,
            )
            .await?;
        Ok::<_, Refusal>(done("/account", Outcome::SessionEnded))
    };
    ended.await.unwrap_or_else(IntoResponse::into_response)
}
