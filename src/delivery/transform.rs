//! A destination's insert function, run on its events before they are sent: each event
//! goes through the handler its `type` names (`onTrack`, …) in the destination's
//! function host ([`crate::functions::host`]). What comes back is sent instead, passed
//! through unchanged, dropped, or failed (retried, or kept with the dead letters).

use serde_json::value::RawValue;

use super::sink::Outgoing;
use crate::catalog::FunctionDoc;
use crate::functions::host::{Host, HostError, Loaded};
use crate::functions::{Failure, Handler, Outcome, errors};
use crate::record::Head;
use crate::telemetry;

/// What the function made of one event.
#[derive(Debug)]
pub enum Applied {
    /// Send this (the handler's answer, or the event unchanged).
    Send(Box<RawValue>),
    /// Send nothing; the event is settled (the handler returned nothing or threw
    /// `DropEvent`).
    Dropped,
    /// Try the event again later (the handler threw `RetryError`).
    Retry(String),
    /// Give the event up: it goes to the dead letters with this reason and message.
    Failed(&'static str, String),
}

/// A destination's insert function and the host that runs it.
pub struct Transform {
    destination: String,
    function: Loaded,
    host: Host,
}

impl Transform {
    /// The transform of `destination`, its functions run by `program function-host`
    /// (`network.function_host`), their `fetch` reaching what `network` allows.
    pub fn new(destination: &str, network: &super::sink::Network) -> Self {
        Self {
            destination: destination.to_owned(),
            function: Loaded {
                id: String::new(),
                version: 0,
                code: String::new(),
                settings: serde_json::Value::Null,
            },
            host: Host::new(network.function_host.to_path_buf(), network.allow_private),
        }
    }

    /// Runs `function` on each event, in order: one [`Applied`] per event. A function
    /// other than the last one run (a new deployment, new settings) is loaded first.
    pub async fn apply(&mut self, function: &FunctionDoc, events: &[&Outgoing]) -> Vec<Applied> {
        if self.function.id != function.id
            || self.function.version != function.version
            || self.function.code != function.code
            || self.function.settings.as_object() != Some(&function.settings)
        {
            self.function = Loaded {
                id: function.id.clone(),
                version: function.version,
                code: function.code.clone(),
                settings: serde_json::Value::Object(function.settings.clone()),
            };
        }
        let mut out: Vec<Option<Applied>> = Vec::with_capacity(events.len());
        let mut runs = Vec::new();
        let mut at = Vec::new();
        let mut ids = Vec::new();
        for (i, o) in events.iter().enumerate() {
            let head: Head<'_> = serde_json::from_str(o.event.get()).unwrap_or_default();
            match Handler::of(&head.kind) {
                Some(handler) => {
                    runs.push((handler, o.event.get()));
                    at.push(i);
                    ids.push(head.message_id);
                    out.push(None);
                }
                // No handler can take it (a stored event always has a known type).
                None => out.push(Some(self.count("passed", Applied::Send(o.event.clone())))),
            }
        }
        if !runs.is_empty() {
            match self.host.run(&self.function, &runs).await {
                Ok(ran) => {
                    for ((i, invocation), id) in at.iter().zip(ran).zip(ids) {
                        if let Outcome::Failed(failure, message) = &invocation.outcome {
                            self.keep(id, failure.name(), message);
                        }
                        telemetry::FUNCTION_DURATION
                            .with([&self.function.id])
                            .record(invocation.took.as_secs_f64());
                        out[*i] = Some(self.settle(events[*i], invocation.outcome));
                    }
                }
                Err(HostError::Unloadable(message)) => {
                    self.keep(None, "load", &message);
                    tracing::error!(destination = %self.destination, function = %self.function.id, version = self.function.version, %message, "the insert function does not load; its events go to the dead letters");
                    let why = format!("the function's code does not load: {message}");
                    for i in &at {
                        out[*i] =
                            Some(self.count("load", Applied::Failed("function_load", why.clone())));
                    }
                }
                // The process could not be started or loaded: tried again later.
                Err(error) => {
                    tracing::error!(destination = %self.destination, function = %self.function.id, version = self.function.version, %error, "the insert function's process could not be used; its events are tried again");
                    for i in &at {
                        out[*i] = Some(self.count("host", Applied::Retry(error.to_string())));
                    }
                }
            }
        }
        out.into_iter()
            .map(|a| a.unwrap_or(Applied::Failed("function_host", "no answer".into())))
            .collect()
    }

    fn settle(&self, event: &Outgoing, outcome: Outcome) -> Applied {
        match outcome {
            Outcome::Event(json) => match RawValue::from_string(json) {
                Ok(raw) => self.count("event", Applied::Send(raw)),
                Err(e) => self.count(
                    Failure::Error.name(),
                    Applied::Failed(
                        "function_error",
                        format!("the function answered no JSON: {e}"),
                    ),
                ),
            },
            Outcome::Passed => self.count("passed", Applied::Send(event.event.clone())),
            Outcome::Dropped => self.count("dropped", Applied::Dropped),
            Outcome::Failed(Failure::Retry, message) => {
                self.count(Failure::Retry.name(), Applied::Retry(message))
            }
            Outcome::Failed(failure, message) => {
                self.count(failure.name(), Applied::Failed(reason(failure), message))
            }
        }
    }

    /// Keeps a failed run for `GET /api/v1/functions/{id}/errors`.
    fn keep(&self, message_id: Option<String>, kind: &str, message: &str) {
        errors::record(
            &self.function.id,
            errors::Recorded {
                at: chrono::Utc::now(),
                message_id,
                target: self.destination.clone(),
                kind: kind.to_owned(),
                message: message.to_owned(),
                node: None,
            },
        );
    }

    fn count(&self, outcome: &'static str, applied: Applied) -> Applied {
        telemetry::FUNCTION_INVOCATIONS
            .with([&self.function.id, &self.destination, outcome])
            .increment(1);
        applied
    }
}

/// The dead-letter reason of a failure.
fn reason(failure: Failure) -> &'static str {
    match failure {
        Failure::Retry => "function_retry",
        Failure::Invalid => "function_invalid",
        Failure::Error => "function_error",
        Failure::Timeout => "function_timeout",
        Failure::Memory => "function_memory",
        Failure::TooLarge => "function_too_large",
    }
}
