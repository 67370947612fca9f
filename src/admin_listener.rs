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

use crate::catalog;
use crate::config::Secret;
use crate::delivery::{Delivery, dead_letter};
use crate::gateway::{self, Rejection, Reply, Route};
use crate::telemetry;

/// What `/health` and `/ready` look at.
pub enum Probes {
    /// A gateway (`sluice serve`): its catalog and event log.
    Gateway(Arc<gateway::State>),
    /// A delivery process (`sluice deliver`): ready once it has a catalog and its
    /// JetStream connection is up.
    Deliver {
        /// The catalog the workers follow.
        catalog: catalog::Live,
        /// The JetStream connection.
        nats: async_nats::Client,
    },
}

/// Delivery running in this process, as the admin listener sees it.
pub struct Delivered {
    /// The local log's delivery, whose lag gauges are set at each scrape (JetStream's
    /// are kept by tasks of their own).
    pub local: Option<Delivery>,
    /// The dead-letter store its workers write to (either engine).
    pub dead_letters: dead_letter::Store,
}

/// What the admin listener serves from.
pub struct State {
    /// The probes' subject.
    pub probes: Probes,
    /// Delivery, when it runs in this process (dead letters).
    pub delivery: Option<Delivered>,
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
            // Lag is computed now, not when the worker last woke (it may be sleeping out
            // a back-off while the backlog grows).
            if let Some(local) = state.delivery.as_ref().and_then(|d| d.local.as_ref()) {
                local.report_lag();
            }
            let mut reply =
                gateway::json(StatusCode::OK, Bytes::from(telemetry::metrics().render()));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            reply
        }
        ("/health" | "/ready", true) => {
            let route = if path == "/ready" {
                Route::Ready
            } else {
                Route::Health
            };
            match &state.probes {
                Probes::Gateway(gateway) => gateway::probe(gateway, route),
                Probes::Deliver { catalog, nats } => deliver_probe(catalog, nats, route),
            }
        }
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

/// `sluice deliver`'s probes: liveness always; ready with a catalog and a connection.
fn deliver_probe(catalog: &catalog::Live, nats: &async_nats::Client, route: Route) -> Reply {
    if route != Route::Ready {
        return gateway::alive();
    }
    let catalog_version = catalog.snapshot().version();
    let connected = nats.connection_state() == async_nats::connection::State::Connected;
    gateway::readiness(
        catalog_version > 0 && connected,
        serde_json::json!({
            "catalog_version": catalog_version,
            "jetstream_connected": connected,
        }),
    )
}

fn dead_letters(state: &State) -> Reply {
    let Some(delivery) = &state.delivery else {
        return gateway::json(StatusCode::OK, Bytes::from_static(b"{}"));
    };
    match delivery.dead_letters.list() {
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
    match delivery.dead_letters.replay(id).await {
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
