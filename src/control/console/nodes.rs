//! `/nodes`: the credentials gateways and delivery nodes fetch the catalog with, a new
//! one (its secret shown once, on the page that made it), and revoking one.

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
use super::shown_once;
use super::sources::{cursor_query, encode};
use super::team::about_the_form;
use super::{Change, apply, one_change};
use super::{Console, Frame, Outcome, Refusal, Secret, Section, Viewer, When, inner, render};

/// Routes of this file.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/nodes", get(list).post(create))
        .route("/nodes/{id}/revoke", post(revoke))
}

/// A node credential as the API shows it (never the credential).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    id: String,
    name: String,
    role: String,
    display: String,
    created_by: String,
    expires_at: When,
}

#[derive(Debug, Deserialize)]
struct NodeList {
    nodes: Vec<Node>,
    pagination: super::team::Pagination,
}

#[derive(Template)]
#[template(path = "console/nodes.html")]
struct NodesPage {
    frame: Frame,
    nodes: Vec<Node>,
    next: Option<String>,
    /// A credential made just now: shown on this answer only.
    secret: Option<String>,
    error: Option<String>,
}

async fn page(
    console: &Console,
    parts: &Parts,
    secret: Option<String>,
    error: Option<String>,
) -> Result<Response, Refusal> {
    let viewer = Viewer::of(console, parts).await?;
    let list: NodeList = inner(console, parts)
        .get(&format!("/api/v1/nodes?{}", cursor_query(parts)))
        .await?;
    Ok(render(
        super::form_status(error.as_deref()),
        &NodesPage {
            frame: viewer.frame("Gateway credentials", Section::Operations, parts),
            nodes: list.nodes,
            next: list.pagination.next,
            secret,
            error,
        },
    ))
}

/// `GET /nodes`.
async fn list(State(console): State<Console>, parts: Parts) -> Response {
    page(&console, &parts, None, None)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

const NEW_NODE: Secret = Secret {
    title: "New gateway credential",
    note: "Copy it now: Sluice keeps only its digest and will not show it again. Start the node with --node-token (or SLUICE_NODE_TOKEN).",
    element: "node-secret",
};

/// `POST /nodes`: name, role (`gateway` or `delivery`), days to live (blank: the
/// workspace's longest).
async fn create(State(console): State<Console>, parts: Parts, body: Bytes) -> Response {
    let made = async {
        let form = Form::read(&body)?;
        let mut request = json!({"name": form.get("name"), "role": form.get("role")});
        if let Some(days) = form.some("days") {
            request["expiresInDays"] = days
                .parse::<u32>()
                .map_or_else(|_| json!(days), |d| json!(d));
        }
        let answer = apply(
            &console,
            &parts,
            &form,
            Change::new(Method::POST, "/api/v1/nodes", Some(request)),
        )
        .await;
        match answer {
            Ok(answer) => {
                let secret = answer
                    .data
                    .get("secret")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                shown_once(
                    page(&console, &parts, secret.clone(), None).await,
                    NEW_NODE,
                    secret,
                    "/nodes",
                )
            }
            Err(refusal) => match about_the_form(&refusal) {
                Some(why) => page(&console, &parts, None, Some(why)).await,
                None => Err(refusal),
            },
        }
    };
    made.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /nodes/{id}/revoke`.
async fn revoke(
    State(console): State<Console>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Response {
    one_change(
        &console,
        &parts,
        &body,
        ("/nodes", Outcome::NodeRevoked),
        |_form| {
            Ok(Change::new(
                Method::DELETE,
                format!("/api/v1/nodes/{}", encode(&id)),
                None,
            ))
        },
    )
    .await
}
