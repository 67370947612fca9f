//! `POST /v1/functions/{id}`: a source function's webhook. The request presents the
//! endpoint's secret (`Authorization: Bearer <secret>` or `?token=<secret>`); its body is
//! handed to the function's `onRequest` in the endpoint's function host (a child process,
//! as in delivery); the events its `Segment.track(…)` calls make then take the path of any
//! other request of the endpoint's source: message rules, tracking plan, de-duplication,
//! the log (durable before the 200), delivery.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use http::HeaderMap;
use hyper::Request;
use hyper::body::Incoming;
use serde_json::json;

use super::response::FunctionProblem;
use super::{Rejection, Reply, State, admit, admitted_address, body, pace};
use crate::catalog::{KeyDigest, SourceFunctionDoc};
use crate::event::{self, Shape};
use crate::functions::host::{Host, HostError, Loaded};
use crate::functions::{Failure, Handler, Outcome, errors};
use crate::telemetry;

/// How long a request waits for its endpoint's function to be free.
const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Request headers the function never sees (credentials).
const HIDDEN_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Answers a source function's webhook.
pub(super) async fn handle(
    state: &State,
    req: Request<Incoming>,
    peer: SocketAddr,
    id: &str,
) -> Result<Reply, Rejection> {
    let limits = &state.config.limits;
    let (parts, body) = req.into_parts();
    let snapshot = state.catalog.snapshot();
    let now = Utc::now();

    // 1. The endpoint and its secret, before the body is read. Guessing secrets counts
    //    against the address like guessing write keys.
    let ip = admitted_address(state, &parts.headers, peer)?;
    // Hosts of endpoints the catalog no longer has stop with their last handle.
    state
        .function_hosts
        .retain(|endpoint, _| snapshot.source_function(endpoint).is_some());
    let Some(function) = snapshot.source_function(id).cloned() else {
        state.failed_keys.fail(ip);
        return Err(Rejection::NotFound);
    };
    let presented = secret(&parts.headers, parts.uri.query());
    let expected = KeyDigest::from_hex(&function.secret_sha256);
    let accepted = match (presented, expected) {
        (Some(secret), Some(expected)) => KeyDigest::of(&secret).matches(&expected),
        _ => false,
    };
    if !accepted {
        state.failed_keys.fail(ip);
        return Err(Rejection::FunctionSecret);
    }
    let Some(source) = snapshot
        .sources()
        .iter()
        .find(|s| s.id == function.source && s.enabled)
    else {
        return Err(Rejection::NotFound);
    };
    let meters = state.meters.source(&snapshot, &source.id);
    admit(state, source, &meters, now)?;

    // 2. The body, bounded as any request's, as text.
    let body = body::read(&parts.headers, body, limits.max_request_bytes, pace(state))
        .await
        .map_err(Rejection::Body)?;
    let text =
        String::from_utf8(body.bytes).map_err(|_| Rejection::Function(FunctionProblem::NotText))?;
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .filter(|(name, _)| !HIDDEN_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), json!(v)))
        })
        .collect();
    let request = json!({
        "url": parts.uri.path(),
        "method": parts.method.as_str(),
        "headers": headers,
        "body": text,
    })
    .to_string();

    // 3. The function, one request at a time per endpoint.
    let events = run(state, &function, &request).await?;

    // 4. Its events, as a batch of the source's.
    let mut bytes = format!("{{\"batch\":{events}}}").into_bytes();
    let body_len = bytes.len();
    let envelope = event::decode(&mut bytes, Shape::Batch, limits).map_err(Rejection::Decode)?;
    super::store(state, (source, &meters), envelope, body_len, ip, now).await
}

/// The endpoint's secret as the request presents it.
fn secret(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(token) = text.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

/// Runs the function's `onRequest`; the events it made, as a JSON array.
async fn run(
    state: &State,
    function: &SourceFunctionDoc,
    request: &str,
) -> Result<String, Rejection> {
    let loaded = Loaded {
        id: function.function.clone(),
        version: function.version,
        code: function.code.clone(),
        settings: serde_json::Value::Object(function.settings.clone()),
    };
    // One request at a time per endpoint; one waiting longer than this is turned away.
    let host = state.function_host(&function.id);
    let Ok(mut host) = tokio::time::timeout(QUEUE_WAIT, host.lock()).await else {
        return Err(Rejection::Function(FunctionProblem::Unavailable));
    };
    let ran = host.run(&loaded, &[(Handler::Request, request)]).await;
    drop(host);
    let count = |outcome: &str| {
        telemetry::SOURCE_FUNCTION_INVOCATIONS
            .with([&function.function, &function.source, outcome])
            .increment(1);
    };
    let invocation = match ran {
        Ok(mut ran) if ran.len() == 1 => ran.remove(0),
        Ok(_) => {
            count("host");
            return Err(Rejection::Function(FunctionProblem::Unavailable));
        }
        Err(HostError::Unloadable(message)) => {
            keep(function, "load", &message);
            tracing::warn!(endpoint = %function.id, function = %function.function, %message, "a source function's code does not load");
            count("load");
            return Err(Rejection::Function(FunctionProblem::Load));
        }
        Err(error) => {
            tracing::error!(endpoint = %function.id, function = %function.function, %error, "a source function could not run");
            count("host");
            return Err(Rejection::Function(FunctionProblem::Unavailable));
        }
    };
    match invocation.outcome {
        Outcome::Event(events) => {
            count("event");
            Ok(events)
        }
        Outcome::Passed => {
            count("passed");
            Err(Rejection::Function(FunctionProblem::NoHandler))
        }
        Outcome::Dropped => {
            count("dropped");
            Ok("[]".to_owned())
        }
        Outcome::Failed(failure, message) => {
            count(failure.name());
            keep(function, failure.name(), &message);
            tracing::debug!(endpoint = %function.id, function = %function.function, failure = failure.name(), %message, "a source function failed");
            Err(Rejection::Function(match failure {
                Failure::Retry => FunctionProblem::Retry,
                Failure::Invalid => FunctionProblem::Invalid,
                Failure::Timeout => FunctionProblem::Timeout,
                Failure::Error | Failure::Memory | Failure::TooLarge => FunctionProblem::Error,
            }))
        }
    }
}

/// Keeps a failed run for `GET /api/v1/functions/{id}/errors`.
fn keep(function: &SourceFunctionDoc, kind: &str, message: &str) {
    errors::record(
        &function.function,
        errors::Recorded {
            at: Utc::now(),
            message_id: None,
            target: function.source.clone(),
            kind: kind.to_owned(),
            message: message.to_owned(),
            node: None,
        },
    );
}

/// One endpoint's function host, made on first use.
pub(super) fn host_for(
    hosts: &dashmap::DashMap<String, Arc<tokio::sync::Mutex<Host>>>,
    program: &std::path::Path,
    allow_private: bool,
    id: &str,
) -> Arc<tokio::sync::Mutex<Host>> {
    Arc::clone(
        hosts
            .entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Host::new(
                    program.to_path_buf(),
                    allow_private,
                )))
            })
            .value(),
    )
}
