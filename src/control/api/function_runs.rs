//! `/functions/test-run`: a function's code run on a sample event in the sandbox that
//! runs it for real, with nothing stored and nothing sent: what it returns, the error it
//! throws (and what would become of the event), and what it logs. Asking needs the
//! "Create Functions" permission.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::wire::Data;
use super::{Api, ApiError, Body, Caller, data};
use crate::control::policy::Action;
use crate::functions::host::{Host, HostError, Loaded};
use crate::functions::{Handler, Invocation, Outcome};

/// The longest function code accepted, in characters.
pub const MAX_CODE_CHARS: usize = 64 << 10;

/// Routes of this file.
pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/functions/test-run", post(test_run))
}

/// A test run: the code, its settings and a sample event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRun {
    /// The function's JavaScript (`async function onTrack(event, settings) { … }`).
    #[schema(max_length = 65_536)]
    code: String,
    /// The event: an object, run by the handler its `type` names, or an array of events,
    /// run by `onBatch`.
    event: Value,
    /// The function's settings, an object (default `{}`).
    #[serde(default = "no_settings")]
    #[schema(value_type = Object)]
    settings: Value,
}

fn no_settings() -> Value {
    Value::Object(serde_json::Map::new())
}

/// A failed run: what became of the event, and why.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    /// `retry` (`RetryError`: tried again), `invalid` (`ValidationError`,
    /// `InvalidEventPayload`, `EventNotSupported`: refused), `error` (any other error),
    /// `timeout`, `memory`, `too_large`, or `load` (the code does not load: a syntax
    /// error, or it throws or runs too long while loading).
    pub kind: String,
    /// Whether delivery would try the event again.
    pub retryable: bool,
    /// The error (`Name: message`).
    pub message: String,
}

/// A test run's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestRunResult {
    /// The handler that ran (`onTrack`, …, `onBatch`).
    pub handler: String,
    /// `EVENT` (the handler returned an event), `PASSED` (no handler for its type: the
    /// event goes on unchanged), `DROPPED` (it returned nothing or threw `DropEvent`)
    /// or `FAILED`.
    pub outcome: String,
    /// What the handler returned (`EVENT` only): an event, or for `onBatch` its events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed (`FAILED` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The `console` lines it wrote (at most 50), level first.
    pub logs: Vec<String>,
    /// How long it ran, in milliseconds.
    pub duration_ms: f64,
}

/// Run a function's code on a sample event, with no side effects.
#[utoipa::path(
    post,
    path = "/api/v1/functions/test-run",
    tag = "Functions",
    request_body = TestRun,
    responses((status = 200, description = "Run a function's code on a sample event, with no side effects.", body = Data<TestRunResult>))
)]
async fn test_run(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Body(run): Body<TestRun>,
) -> Result<Response, ApiError> {
    api.allow_workspace(&caller, Action::CreateFunctions)
        .await?;
    let Some(runner) = api.functions_runner.clone() else {
        return Err(ApiError::NotFound(
            "function code does not run on this installation (control.functions = false)".into(),
        ));
    };
    // One run at a time (each is a child process: 5 s to load, 1.2 s to run, and what
    // its fetch calls take, 5 s at most).
    let Ok(_running) = api.functions_running.try_acquire() else {
        return Err(ApiError::RateLimited);
    };
    if run.code.chars().count() > MAX_CODE_CHARS {
        return Err(ApiError::field(
            "code",
            format!("at most {MAX_CODE_CHARS} characters"),
        ));
    }
    let handler = match &run.event {
        Value::Array(events) if events.iter().all(Value::is_object) => Handler::Batch,
        Value::Object(event) => event
            .get("type")
            .and_then(Value::as_str)
            .and_then(Handler::of)
            .ok_or_else(|| {
                ApiError::field(
                    "event.type",
                    "track, identify, page, screen, group or alias",
                )
            })?,
        _ => {
            return Err(ApiError::field(
                "event",
                "an event object or an array of event objects",
            ));
        }
    };
    let settings = run.settings;
    if !settings.is_object() {
        return Err(ApiError::field("settings", "a JSON object"));
    }
    // A process of its own, as delivery runs functions, gone when the run is. Its
    // `fetch` never reaches private addresses, whatever delivery may: what a test run
    // reads is shown to its caller, from the control plane's own network.
    let mut host = Host::new(runner, false);
    let function = Loaded {
        id: "test-run".into(),
        version: 0,
        code: run.code,
        settings,
    };
    let input = run.event.to_string();
    let ran = host.run(&function, &[(handler, input.as_str())]).await;
    host.stop().await;
    let result = match ran.map(|mut ran| ran.pop()) {
        Ok(Some(ran)) => shown(handler, ran),
        // Code that does not load is a result too: the run says why.
        Err(HostError::Unloadable(message)) => failed(handler, "load", message),
        Ok(None) => return Err(ApiError::Internal),
        Err(e) => {
            tracing::error!(error = %e, "a function test run failed");
            return Err(ApiError::Internal);
        }
    };
    Ok(data(result))
}

/// A run that failed before its handler could answer.
fn failed(handler: Handler, kind: &str, message: String) -> TestRunResult {
    TestRunResult {
        handler: handler.name().to_owned(),
        outcome: "FAILED".into(),
        output: None,
        error: Some(RunError {
            kind: kind.to_owned(),
            retryable: false,
            message,
        }),
        logs: Vec::new(),
        duration_ms: 0.0,
    }
}

/// An invocation as the API shows it.
fn shown(handler: Handler, ran: Invocation) -> TestRunResult {
    let (outcome, output, error) = match ran.outcome {
        Outcome::Event(json) => ("EVENT", serde_json::from_str(&json).ok(), None),
        Outcome::Passed => ("PASSED", None, None),
        Outcome::Dropped => ("DROPPED", None, None),
        Outcome::Failed(failure, message) => (
            "FAILED",
            None,
            Some(RunError {
                kind: failure.name().to_owned(),
                retryable: failure.retryable(),
                message,
            }),
        ),
    };
    TestRunResult {
        handler: handler.name().to_owned(),
        outcome: outcome.to_owned(),
        output,
        error,
        logs: ran.logs,
        duration_ms: ran.took.as_secs_f64() * 1000.0,
    }
}
