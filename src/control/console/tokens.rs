//! `/tokens`: the workspace's API tokens, a new one (its secret shown once, on the page
//! that made it), and revoking one.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::form::Form;
use super::sources::{cursor_query, encode};
use super::team::about_the_form;
use super::{
    Change, Console, Frame, Outcome, Refusal, Section, Viewer, When, inner, one_change, render,
};
use super::{Secret, shown_once};
use crate::control::policy::Scope;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}/revoke", post(revoke))
        .route("/tokens/{id}/rotate", post(rotate))
}

/// A token as the console shows it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Token {
    id: String,
    user_id: String,
    name: String,
    scopes: Vec<String>,
    display: String,
    expires_at: When,
    revoked_at: Option<When>,
    last_used_at: Option<When>,
}

#[derive(Debug, Deserialize)]
struct TokenList {
    tokens: Vec<Token>,
    pagination: super::team::Pagination,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    frame: Frame,
    tokens: Vec<Token>,
    next: Option<String>,
    /// The viewer (only a token's holder may rotate it).
    me: String,
    scopes: Vec<&'static str>,
    /// A token made just now: its secret, shown on this answer only.
    secret: Option<String>,
    /// Why the form's token was not made.
    error: Option<String>,
}

async fn page(
    console: &Console,
    parts: &Parts,
    secret: Option<String>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let path = format!("/api/v1/tokens?{}", cursor_query(parts));
    let list: TokenList = inner(console, parts).get(&path).await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &TokensPage {
            frame: viewer.frame("API tokens", Section::Tokens, parts),
            tokens: list.tokens,
            next: list.pagination.next,
            me: viewer.id().to_owned(),
            scopes: Scope::PERSONAL.iter().map(|s| s.name()).collect(),
            secret,
            error,
        },
    ))
}

/// `GET /tokens`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

const NEW_TOKEN: Secret = Secret {
    title: "New token",
    note: "Copy it now: Sluice keeps only its digest and will not show it again. Send it as Authorization: Bearer.",
    element: "token-secret",
};

/// `POST /tokens`: name, scopes (checkboxes), days to live.
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let days: u32 = form.get("days").parse().unwrap_or(0);
        let request = json!({
            "name": form.get("name"),
            "scopes": form.all("scope"),
            "expiresInDays": days,
        });
        let answer = inner(&console, &parts)
            .with_csrf(form.csrf())
            .change(Method::POST, "/api/v1/tokens", Some(request))
            .await;
        match answer {
            Ok(answer) => with_secret(&console, &parts, &answer).await,
            // A form the API finds wrong is shown again with why.
            Err(refusal) => match about_the_form(&refusal) {
                Some(message) => page(&console, &parts, None, Some(message)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// The tokens page with the secret a change just made (`answer`'s), shown this once.
async fn with_secret(
    console: &Console,
    parts: &Parts,
    answer: &super::inner::Answer,
) -> Result<Response, Refusal> {
    let secret = answer
        .data
        .get("secret")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    shown_once(
        page(console, parts, secret.clone(), None).await,
        NEW_TOKEN,
        secret,
        "/tokens",
    )
}

/// `POST /tokens/{id}/rotate`: a new secret for the viewer's own token (same name,
/// scopes and lifetime), shown once; the old one stops working.
async fn rotate(
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
                &format!("/api/v1/tokens/{}/rotate", encode(&id)),
                None,
            )
            .await?;
        with_secret(&console, &parts, &answer).await
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /tokens/{id}/revoke`.
async fn revoke(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    let path = format!("/api/v1/tokens/{}", encode(&id));
    one_change(
        &console,
        &parts,
        &body,
        ("/tokens", Outcome::TokenRevoked),
        |_| Ok(Change::new(Method::DELETE, path, None)),
    )
    .await
}
