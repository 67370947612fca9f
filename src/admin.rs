//! The admin listener: `/metrics` (Prometheus text), `/health`, `/ready`, and the
//! dead-letter store: `GET /dlq` (counts per destination), `POST /dlq/<id>/replay`.
//!
//! Reads are open (monitoring must work without credentials); every route that changes
//! something needs `Authorization: Bearer <server.admin_token>`, and is refused outright
//! while no token is configured.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use crate::config::Secret;
use crate::delivery::Delivery;
use crate::gateway::{self, Rejection, Reply, Route};
use crate::telemetry;

/// What the admin listener serves from.
pub struct State {
    /// The gateway's state (catalog and log, for the probes).
    pub gateway: Arc<gateway::State>,
    /// Delivery, when it runs in this process (dead letters).
    pub delivery: Option<Delivery>,
    /// `server.admin_token`.
    pub token: Option<Secret>,
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers one request on the admin listener.
pub async fn handle(state: Arc<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    let is_read = matches!(*req.method(), Method::GET | Method::HEAD);
    match (path, is_read) {
        ("/metrics", true) => {
            let mut reply =
                gateway::json(StatusCode::OK, Bytes::from(telemetry::metrics().render()));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            reply
        }
        ("/health", true) => gateway::probe(&state.gateway, Route::Health),
        ("/ready", true) => gateway::probe(&state.gateway, Route::Ready),
        ("/metrics" | "/health" | "/ready" | "/dlq", false) => {
            Rejection::MethodNotAllowed("GET, HEAD").into_reply()
        }
        ("/dlq", true) => dead_letters(&state),
        _ => match path
            .strip_prefix("/dlq/")
            .and_then(|p| p.strip_suffix("/replay"))
        {
            Some(id) if *req.method() == Method::POST => match refusal(&state, &req) {
                None => replay(&state, id).await,
                Some(refusal) => refusal,
            },
            Some(_) => Rejection::MethodNotAllowed("POST").into_reply(),
            None => Rejection::NotFound.into_reply(),
        },
    }
}

fn dead_letters(state: &State) -> Reply {
    let Some(delivery) = &state.delivery else {
        return gateway::json(StatusCode::OK, Bytes::from_static(b"{}"));
    };
    match delivery.dead_letters() {
        Ok(list) => {
            // `{destination: entries}`; unreadable lines are listed apart so an operator
            // sees them (they are kept, never replayed).
            let unreadable: serde_json::Map<String, serde_json::Value> = list
                .iter()
                .filter(|s| s.unreadable > 0)
                .map(|s| (s.destination.clone(), s.unreadable.into()))
                .collect();
            let mut body: serde_json::Map<String, serde_json::Value> = list
                .into_iter()
                .map(|s| (s.destination, s.entries.into()))
                .collect();
            if !unreadable.is_empty() {
                body.insert("unreadable".to_owned(), unreadable.into());
            }
            gateway::json(
                StatusCode::OK,
                serde_json::Value::Object(body).to_string().into(),
            )
        }
        Err(error) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "dead_letters_unreadable",
            &error.to_string(),
        ),
    }
}

/// The answer to a changing request without the admin token; `None` lets it through.
fn refusal(state: &State, req: &Request<Incoming>) -> Option<Reply> {
    let Some(token) = &state.token else {
        return Some(problem(
            StatusCode::FORBIDDEN,
            "admin_token_not_configured",
            "changing admin routes are disabled: set server.admin_token (SLUICE__SERVER__ADMIN_TOKEN)",
        ));
    };
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(presented) if token.matches(presented) => None,
        _ => Some(problem(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "send Authorization: Bearer <server.admin_token>",
        )),
    }
}

async fn replay(state: &State, id: &str) -> Reply {
    let Some(delivery) = &state.delivery else {
        return problem(
            StatusCode::NOT_FOUND,
            "delivery_disabled",
            "delivery is not enabled on this instance",
        );
    };
    match delivery.replay(id).await {
        Ok(result) => gateway::json(
            StatusCode::OK,
            serde_json::json!({ "destination": id, "delivered": result.delivered, "failed": result.failed, "unreadable": result.unreadable })
                .to_string()
                .into(),
        ),
        Err(crate::delivery::ReplayError::UnknownDestination(_)) => {
            problem(StatusCode::NOT_FOUND, "unknown_destination", "no running destination has this id")
        }
        Err(error) => problem(StatusCode::INTERNAL_SERVER_ERROR, "dead_letters_unreadable", &error.to_string()),
    }
}

fn problem(status: StatusCode, code: &str, message: &str) -> Reply {
    let body =
        serde_json::json!({ "success": false, "code": code, "message": message, "error": message });
    gateway::json(status, body.to_string().into())
}
