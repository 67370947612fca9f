//! Function code in a process of its own: the caller writes one request to a child
//! `sluice function-run` and reads one answer, and kills the child if it has not
//! answered in time. The engine stops most runaway code by itself ([`super::Sandbox`]);
//! the kill is for what it cannot stop (built-in loops that never check its limit), so a
//! function can never pin a core of the process that runs it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Failure, Handler, Invocation, Limits, LoadError, Outcome, Sandbox};

/// The largest request or answer passed through the pipes, in bytes.
const MAX_MESSAGE: u64 = 8 << 20;

/// One run: code and settings loaded, one handler invoked on one input.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The function's code.
    pub code: String,
    /// Its settings (a JSON object).
    pub settings: serde_json::Value,
    /// The handler, by its name in code (`onTrack`, …, `onBatch`).
    pub handler: String,
    /// The event (or events, for `batch`) as JSON.
    pub input: String,
}

/// What the child answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// The code loaded and ran.
    Ran {
        /// `event`, `passed`, `dropped` or a [`Failure`] name.
        outcome: String,
        /// The returned event (`event`) or the failure's message.
        text: String,
        /// `console` lines.
        logs: Vec<String>,
        /// Run time, in microseconds.
        micros: u64,
    },
    /// The code did not load.
    Unloadable {
        /// Why.
        message: String,
    },
}

/// Why a run in a child process gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The child could not be started or talked to.
    #[error("the function runner could not be used: {0}")]
    Io(#[from] std::io::Error),
    /// The child did not answer in time and was killed.
    #[error("the function ran past its time limit and its process was stopped")]
    Killed,
    /// The child answered something unreadable (it crashed, say).
    #[error("the function runner answered nothing usable: {0}")]
    Garbled(String),
}

/// A handler by its name in code (`onTrack`, …, `onBatch`).
pub(super) fn handler_named(name: &str) -> Option<Handler> {
    [
        Handler::Track,
        Handler::Identify,
        Handler::Page,
        Handler::Screen,
        Handler::Group,
        Handler::Alias,
        Handler::Batch,
        Handler::Request,
    ]
    .into_iter()
    .find(|h| h.name() == name)
}

/// Runs `request` in this process and returns the answer a child writes.
#[must_use]
pub fn answer(request: &Request, limits: Limits) -> Reply {
    let Some(handler) = handler_named(&request.handler) else {
        return Reply::Unloadable {
            message: format!("no handler for events of type {:?}", request.handler),
        };
    };
    match Sandbox::load(&request.code, &request.settings, limits) {
        Ok(mut fx) => reply_of(&fx.invoke(handler, &request.input)),
        Err(LoadError::Code(message)) => Reply::Unloadable { message },
        Err(e) => Reply::Unloadable {
            message: e.to_string(),
        },
    }
}

pub(super) fn reply_of(ran: &Invocation) -> Reply {
    let (outcome, text) = match &ran.outcome {
        Outcome::Event(json) => ("event", json.clone()),
        Outcome::Passed => ("passed", String::new()),
        Outcome::Dropped => ("dropped", String::new()),
        Outcome::Failed(failure, message) => (failure.name(), message.clone()),
    };
    Reply::Ran {
        outcome: outcome.to_owned(),
        text,
        logs: ran.logs.clone(),
        micros: u64::try_from(ran.took.as_micros()).unwrap_or(u64::MAX),
    }
}

/// The invocation an answer stands for (`None`: the code did not load, with why).
///
/// # Errors
/// The message of code that did not load.
pub fn invocation_of(reply: Reply) -> Result<Invocation, String> {
    match reply {
        Reply::Unloadable { message } => Err(message),
        Reply::Ran {
            outcome,
            text,
            logs,
            micros,
        } => {
            let failure = |f: Failure| Outcome::Failed(f, text.clone());
            let outcome = match outcome.as_str() {
                "event" => Outcome::Event(text.clone()),
                "passed" => Outcome::Passed,
                "dropped" => Outcome::Dropped,
                "retry" => failure(Failure::Retry),
                "invalid" => failure(Failure::Invalid),
                "timeout" => failure(Failure::Timeout),
                "memory" => failure(Failure::Memory),
                "too_large" => failure(Failure::TooLarge),
                _ => failure(Failure::Error),
            };
            Ok(Invocation {
                outcome,
                logs,
                took: Duration::from_micros(micros),
            })
        }
    }
}

/// `sluice function-run`: reads one request on stdin, writes one answer on stdout.
///
/// # Errors
/// Standard input or output fail, or the request is not one.
pub fn serve_stdio() -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_MESSAGE)
        .read_to_string(&mut text)?;
    let request: Request = serde_json::from_str(&text)?;
    let reply = answer(&request, Limits::default());
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &reply)?;
    out.flush()?;
    Ok(())
}

/// Runs `request` in a child `program function-run`, killed after `within`.
///
/// # Errors
/// The child cannot be used, answers garbage, or is killed.
pub async fn run_isolated(
    program: &Path,
    request: &Request,
    within: Duration,
) -> Result<Reply, RunnerError> {
    let mut child = tokio::process::Command::new(program)
        .arg("function-run")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_clear()
        .kill_on_drop(true)
        .spawn()?;
    let body = serde_json::to_vec(request).map_err(|e| RunnerError::Garbled(e.to_string()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| RunnerError::Garbled("no stdin".into()))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| RunnerError::Garbled("no stdout".into()))?;
    let exchange = async {
        stdin.write_all(&body).await?;
        drop(stdin);
        let mut answer = Vec::new();
        (&mut stdout)
            .take(MAX_MESSAGE)
            .read_to_end(&mut answer)
            .await?;
        child.wait().await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(within, exchange).await {
        Ok(answer) => answer?,
        Err(_) => return Err(RunnerError::Killed),
    };
    serde_json::from_slice(&answer).map_err(|e| RunnerError::Garbled(e.to_string()))
}
