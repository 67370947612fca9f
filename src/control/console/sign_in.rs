//! `/sign-in` and `/sign-out`: the password form (for break-glass owners when SSO is
//! required, for everyone otherwise), a button per SSO connection, and signing out.
//! The form posts to the API's `/auth/login` through [`super::inner`], which budgets
//! attempts, checks the second factor and opens the session.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::Form;
use super::{Console, Frame, Outcome, Refusal, Viewer, inner, render};
use crate::control::identity::session;

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/sign-in", get(form).post(sign_in))
        .route("/sign-out", post(sign_out))
}

/// An SSO connection's button.
#[derive(Debug, Deserialize)]
struct Connection {
    name: String,
    start: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Methods {
    require_sso: bool,
    connections: Vec<Connection>,
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage {
    frame: Frame,
    workspace: String,
    email: String,
    return_to: String,
    /// Ask for the authenticator's code.
    code: bool,
    /// Why the last attempt failed.
    error: Option<String>,
    require_sso: bool,
    connections: Vec<(String, String)>,
}

/// Where to go after signing in: a path of this listener only.
fn safe_return(path: &str) -> String {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= 2048
        && !path.chars().any(char::is_control)
        && !path.starts_with("/sign-");
    if ok { path.to_owned() } else { "/".into() }
}

fn query_value(parts: &Parts, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query()?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

async fn page(
    console: &Console,
    parts: &Parts,
    mut page: SignInPage,
    status: StatusCode,
) -> Response {
    let path = format!(
        "/auth/methods?{}",
        serde_urlencoded::to_string([("workspace", page.workspace.as_str())]).unwrap_or_default()
    );
    if let Ok(methods) = inner(console, parts).get::<Methods>(&path).await {
        page.require_sso = methods.require_sso;
        page.connections = methods
            .connections
            .into_iter()
            .map(|c| {
                let to = serde_urlencoded::to_string([("returnTo", page.return_to.as_str())])
                    .unwrap_or_default();
                (c.name, format!("{}?{to}", c.start))
            })
            .collect();
    }
    render(status, &page)
}

/// `GET /sign-in`: the form (or on to the page asked for, when signed in already).
async fn form(State(console): State<Console>, parts: Parts) -> Response {
    let return_to = safe_return(&query_value(&parts, "returnTo").unwrap_or_default());
    if Viewer::of(&console, &parts).await.is_ok() {
        return Redirect::to(&return_to).into_response();
    }
    let mut frame = Frame::outside("Sign in to Sluice");
    frame.flash = Outcome::of(&parts).map(Outcome::message);
    let sign_in = SignInPage {
        frame,
        workspace: query_value(&parts, "workspace").unwrap_or_else(|| "default".into()),
        email: String::new(),
        return_to,
        code: false,
        error: None,
        require_sso: false,
        connections: Vec::new(),
    };
    page(&console, &parts, sign_in, StatusCode::OK).await
}

/// `POST /sign-in`: the form's credentials to `/auth/login`; on success the session's
/// cookie, and on to the page asked for.
async fn sign_in(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let form = match Form::read(&body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    // Login CSRF: only this origin's own form signs a browser in.
    if !session::same_origin(&parts.headers, &console.api.public_url) {
        return Refusal::Api {
            status: StatusCode::FORBIDDEN,
            message: "Sign in from the console's own sign-in page.".into(),
        }
        .into_response();
    }
    let workspace = form.some("workspace").unwrap_or("default").to_owned();
    let mut request = json!({
        "email": form.get("email"),
        "password": form.raw("password"),
        "workspace": workspace,
    });
    if let Some(code) = form.some("code") {
        request["code"] = Value::String(code.to_owned());
    }
    let answer = match inner(&console, &parts)
        .exchange(Method::POST, "/auth/login", Some(request))
        .await
    {
        Ok(answer) => answer,
        Err(refusal) => return refusal.into_response(),
    };
    let return_to = safe_return(form.get("returnTo"));
    if answer.status.is_success() {
        let mut response = Redirect::to(&return_to).into_response();
        for cookie in answer.headers.get_all(header::SET_COOKIE) {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        return response;
    }
    let kind = answer
        .data
        .pointer("/errors/0/type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let code = kind == "second_factor_required";
    let error = if code && form.some("code").is_none() {
        "Enter the code from your authenticator app.".to_owned()
    } else if answer.status == StatusCode::UNAUTHORIZED {
        "The email, password or code is not right.".to_owned()
    } else {
        super::inner::message(answer.status, &answer.data)
    };
    let status = if answer.status == StatusCode::UNAUTHORIZED {
        StatusCode::OK
    } else {
        answer.status
    };
    let sign_in = SignInPage {
        frame: Frame::outside("Sign in to Sluice"),
        workspace,
        email: form.get("email").to_owned(),
        return_to,
        code: code || form.some("code").is_some(),
        error: Some(error),
        require_sso: false,
        connections: Vec::new(),
    };
    page(&console, &parts, sign_in, status).await
}

/// `POST /sign-out`: ends the session on the server and removes the cookie.
async fn sign_out(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let form = match Form::read(&body) {
        Ok(form) => form,
        Err(refusal) => return refusal.into_response(),
    };
    let answer = inner(&console, &parts)
        .with_csrf(form.csrf())
        .change(Method::POST, "/auth/logout", None)
        .await;
    match answer {
        Ok(answer) => {
            let mut response = super::done("/sign-in", Outcome::SignedOut);
            for cookie in answer.headers.get_all(header::SET_COOKIE) {
                response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}
