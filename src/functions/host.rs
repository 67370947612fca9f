//! Insert functions in delivery: one long-lived child `sluice function-host` per
//! destination that has a function. The child keeps the function loaded (the engine and
//! its context are reused from event to event) and answers newline-delimited JSON on its
//! pipes: a `load` line, then `run` lines, each with a chunk of events. The parent's
//! watchdog kills a child that does not answer in time (code the engine cannot stop) and
//! runs that chunk again one event at a time in a fresh child, so only the event that
//! hangs is given up on; the gateway and the other destinations never wait on it.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::fetch::Wait;
use super::{Failure, Handler, Invocation, Limits, LoadError, Outcome, Sandbox};

/// The longest line passed through the pipes, in bytes.
const MAX_LINE: u64 = 64 << 20;

/// What the parent writes, one per line (no `Debug`: it carries settings and events).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum HostRequest {
    /// Load this code with these settings (replacing what was loaded).
    Load {
        /// The code.
        code: String,
        /// Its settings (a JSON object).
        settings: serde_json::Value,
        /// Whether its `fetch` may reach private addresses.
        #[serde(default)]
        allow_private: bool,
    },
    /// Run each `(handler, event JSON)` in order.
    Run {
        /// The events.
        events: Vec<(String, String)>,
    },
}

/// What the child answers, one per line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum HostReply {
    /// The code loaded.
    Loaded,
    /// The code did not load.
    Unloadable {
        /// Why.
        message: String,
    },
    /// One answer per event run.
    Ran {
        /// The answers, in order.
        replies: Vec<Reply>,
    },
    /// A `fetch` is under way that may take this long: the watchdog waits as much more.
    Waiting {
        /// The time, in milliseconds.
        millis: u64,
    },
    /// The `fetch` ended with this much of its time unused: the watchdog takes it back.
    Waited {
        /// The time, in milliseconds.
        unused_millis: u64,
    },
}

/// Writes one answer line on standard output.
fn answer(reply: &HostReply) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, reply)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// What the child answers for one event.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
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

/// A handler by its name in code (`onTrack`, …, `onBatch`).
fn handler_named(name: &str) -> Option<Handler> {
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

fn reply_of(ran: &Invocation) -> Reply {
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

/// The invocation an answer stands for, or why the code did not load.
fn invocation_of(reply: Reply) -> Result<Invocation, String> {
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

/// `sluice function-host`: answers requests on stdin, one line each, until stdin closes.
///
/// # Errors
/// Standard input or output fail, or a line is not a request.
pub fn serve_stdio() -> anyhow::Result<()> {
    end_with_parent();
    let stdin = std::io::stdin().lock();
    let mut loaded: Option<Sandbox> = None;
    for line in stdin.lines() {
        let line = line?;
        let reply = match serde_json::from_str::<HostRequest>(&line)? {
            HostRequest::Load {
                code,
                settings,
                allow_private,
            } => {
                let mut limits = Limits::default();
                limits.fetch.allow_private = allow_private;
                match Sandbox::load(&code, &settings, limits) {
                    Ok(sandbox) => {
                        sandbox.on_fetch(std::sync::Arc::new(|wait: Wait| {
                            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                            // A parent that cannot be told kills this process in time.
                            let _ = answer(&match wait {
                                Wait::Starts(within) => HostReply::Waiting { millis: ms(within) },
                                Wait::Ends(unused) => HostReply::Waited {
                                    unused_millis: ms(unused),
                                },
                            });
                        }));
                        loaded = Some(sandbox);
                        HostReply::Loaded
                    }
                    Err(LoadError::Code(message)) => HostReply::Unloadable { message },
                    Err(e) => HostReply::Unloadable {
                        message: e.to_string(),
                    },
                }
            }
            HostRequest::Run { events } => {
                let replies = events
                    .iter()
                    .map(
                        |(handler, input)| match (&mut loaded, handler_named(handler)) {
                            (Some(sandbox), Some(handler)) => {
                                reply_of(&sandbox.invoke(handler, input))
                            }
                            (None, _) => Reply::Unloadable {
                                message: "no function loaded".into(),
                            },
                            (_, None) => Reply::Unloadable {
                                message: format!("no handler named {handler:?}"),
                            },
                        },
                    )
                    .collect();
                HostReply::Ran { replies }
            }
        };
        answer(&reply)?;
    }
    Ok(())
}

/// How often a host looks whether its parent is still there.
const PARENT_CHECK: Duration = Duration::from_millis(500);

/// Ends this process when its parent is gone (killed, say, with no chance to kill its
/// children): code the engine cannot stop never reads the closed input that would end
/// it, and would keep a core busy for good. The parent is gone when this process is
/// handed to another (its parent id changes).
fn end_with_parent() {
    let parent = std::os::unix::process::parent_id();
    let watch = std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(PARENT_CHECK);
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(1);
                }
            }
        });
    if let Err(error) = watch {
        // Still served: without the watch, only a parent that dies first leaves it on.
        let _ = writeln!(std::io::stderr(), "function host: no parent watch: {error}");
    }
}

/// The function a host runs: what is loaded is replaced when this changes.
#[derive(Clone, PartialEq)]
pub struct Loaded {
    /// The function's id (for logs and metrics).
    pub id: String,
    /// Its deployed version.
    pub version: u32,
    /// The code.
    pub code: String,
    /// Its settings (a JSON object).
    pub settings: serde_json::Value,
}

impl std::fmt::Debug for Loaded {
    /// Setting values are left out: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a host could not run a chunk (every event in it failed the same way).
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The child could not be started or talked to.
    #[error("the function host could not be used: {0}")]
    Io(#[from] std::io::Error),
    /// The child answered something unreadable (it crashed, say).
    #[error("the function host answered nothing usable: {0}")]
    Garbled(String),
    /// The code does not load.
    #[error("the function's code does not load: {0}")]
    Unloadable(String),
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    loaded: Loaded,
    /// A request was written and its answer not read yet. Still set when the next
    /// exchange starts, the last one was abandoned (its caller went away): the child's
    /// answers are out of step, and it is replaced.
    in_flight: bool,
}

/// One function host (a destination's insert function, a source function's endpoint,
/// a test run): a child process started on first use, restarted after its watchdog
/// kills it or the function changes.
pub struct Host {
    program: PathBuf,
    allow_private: bool,
    process: Option<Process>,
    /// The last function that did not load, and why: not started again until it changes.
    unloadable: Option<(Loaded, String)>,
}

/// Events sent to the child in one message: enough to spread the pipes' cost, few enough
/// that a child the watchdog must kill is found within seconds (200 ms each, plus slack).
const CHUNK: usize = 50;
/// How long a child may take to start and load code.
const LOAD_WITHIN: Duration = Duration::from_secs(5);
/// How long a chunk may take beyond its events' own time limits (start-up, pipes).
const SLACK: Duration = Duration::from_secs(1);

impl Host {
    /// A host that starts `program function-host` when first used; its functions'
    /// `fetch` may reach private addresses if `allow_private`.
    pub fn new(program: PathBuf, allow_private: bool) -> Self {
        Self {
            program,
            allow_private,
            process: None,
            unloadable: None,
        }
    }

    /// Runs `function` on each `(handler, event JSON)` in order: one [`Invocation`] per
    /// event. An event whose run had to be killed fails with [`Failure::Timeout`]; one
    /// that made the process die, with [`Failure::Error`].
    ///
    /// # Errors
    /// The code does not load, or a process cannot be started or loaded.
    pub async fn run(
        &mut self,
        function: &Loaded,
        events: &[(Handler, &str)],
    ) -> Result<Vec<Invocation>, HostError> {
        let mut out = Vec::with_capacity(events.len());
        for chunk in events.chunks(CHUNK) {
            out.extend(self.run_chunk(function, chunk).await?);
        }
        Ok(out)
    }

    async fn run_chunk(
        &mut self,
        function: &Loaded,
        events: &[(Handler, &str)],
    ) -> Result<Vec<Invocation>, HostError> {
        match self.exchange(function, events).await? {
            Exchanged::Ran(ran) => Ok(ran),
            // Killed or crashed: one at a time, so only the event that did it fails.
            _ if events.len() > 1 => {
                let mut out = Vec::with_capacity(events.len());
                for event in events {
                    match self.exchange(function, std::slice::from_ref(event)).await? {
                        Exchanged::Ran(mut one) => out.append(&mut one),
                        stopped => out.push(stopped.failed()),
                    }
                }
                Ok(out)
            }
            stopped => Ok(vec![stopped.failed()]),
        }
    }

    /// One chunk through the child.
    async fn exchange(
        &mut self,
        function: &Loaded,
        events: &[(Handler, &str)],
    ) -> Result<Exchanged, HostError> {
        let process = self.ready(function).await?;
        let request = HostRequest::Run {
            events: events
                .iter()
                .map(|(h, e)| (h.name().to_owned(), (*e).to_owned()))
                .collect(),
        };
        let limit = Limits::default();
        let count = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let within = limit.time.saturating_mul(2).saturating_mul(count) + SLACK;
        let waits = limit.fetch.time.saturating_mul(count);
        match talk(process, &request, within, waits).await {
            Ok(HostReply::Ran { replies }) if replies.len() == events.len() => {
                let mut out = Vec::with_capacity(replies.len());
                for reply in replies {
                    out.push(invocation_of(reply).unwrap_or_else(|message| Invocation {
                        outcome: Outcome::Failed(Failure::Error, message),
                        logs: Vec::new(),
                        took: Duration::ZERO,
                    }));
                }
                Ok(Exchanged::Ran(out))
            }
            Ok(_) => {
                tracing::warn!(function = %function.id, version = function.version, "a function's process answered out of turn and was stopped");
                self.stop().await;
                Ok(Exchanged::Crashed)
            }
            Err(Talk::TimedOut) => {
                tracing::warn!(function = %function.id, version = function.version, "a function ran past its time limit and its process was stopped");
                self.stop().await;
                Ok(Exchanged::Killed)
            }
            Err(Talk::Failed(error)) => {
                tracing::warn!(function = %function.id, version = function.version, %error, "a function's process stopped while running it");
                self.stop().await;
                Ok(Exchanged::Crashed)
            }
        }
    }

    /// The child, started and loaded with `function`.
    async fn ready(&mut self, function: &Loaded) -> Result<&mut Process, HostError> {
        if self
            .process
            .as_ref()
            .is_some_and(|p| p.loaded != *function || p.in_flight)
        {
            self.stop().await;
        }
        if let Some((failed, message)) = &self.unloadable {
            if failed == function {
                return Err(HostError::Unloadable(message.clone()));
            }
            self.unloadable = None;
        }
        if self.process.is_none() {
            let mut child = tokio::process::Command::new(&self.program)
                .arg("function-host")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .env_clear()
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child
                .stdin
                .take()
                .ok_or_else(|| HostError::Garbled("no stdin".into()))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| HostError::Garbled("no stdout".into()))?;
            let mut process = Process {
                child,
                stdin,
                stdout: BufReader::new(stdout),
                loaded: function.clone(),
                in_flight: false,
            };
            let load = HostRequest::Load {
                code: function.code.clone(),
                settings: function.settings.clone(),
                allow_private: self.allow_private,
            };
            // Code may not fetch while it loads: no waiting is granted.
            match talk(&mut process, &load, LOAD_WITHIN, Duration::ZERO).await {
                Ok(HostReply::Loaded) => {}
                Ok(HostReply::Unloadable { message }) => {
                    let _ = process.child.kill().await;
                    self.unloadable = Some((function.clone(), message.clone()));
                    return Err(HostError::Unloadable(message));
                }
                Ok(_) => {
                    let _ = process.child.kill().await;
                    return Err(HostError::Garbled("an answer out of turn".into()));
                }
                Err(Talk::TimedOut) => {
                    let _ = process.child.kill().await;
                    return Err(HostError::Unloadable(
                        "loading ran past its time limit".into(),
                    ));
                }
                Err(Talk::Failed(e)) => {
                    let _ = process.child.kill().await;
                    return Err(e);
                }
            }
            self.process = Some(process);
        }
        self.process
            .as_mut()
            .ok_or_else(|| HostError::Garbled("no process".into()))
    }

    /// Kills the child (the next run starts another).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.child.kill().await;
        }
    }
}

/// How a chunk went through the child.
enum Exchanged {
    /// One answer per event.
    Ran(Vec<Invocation>),
    /// It ran past the watchdog's time and was killed.
    Killed,
    /// The child died or answered nonsense (a crash of the engine, say).
    Crashed,
}

impl Exchanged {
    /// The failure of an event whose run stopped the child.
    fn failed(self) -> Invocation {
        let outcome = match self {
            Self::Ran(_) | Self::Crashed => Outcome::Failed(
                Failure::Error,
                "the function's process stopped while running it".into(),
            ),
            Self::Killed => Outcome::Failed(
                Failure::Timeout,
                "the function ran past its time limit and its process was stopped".into(),
            ),
        };
        Invocation {
            outcome,
            logs: Vec::new(),
            took: Duration::ZERO,
        }
    }
}

enum Talk {
    TimedOut,
    Failed(HostError),
}

/// Writes one request line and reads its answer line, within `within` and the time
/// the `fetch` calls it announces take (`Waiting`, then `Waited` with what a call left
/// unused, taken back), each call granted at most a call's budget and all of them, net,
/// at most `waits`: a child that asks for more is out of bounds and answers nothing
/// usable.
async fn talk(
    process: &mut Process,
    request: &HostRequest,
    within: Duration,
    waits: Duration,
) -> Result<HostReply, Talk> {
    let garbled = |why: &str| Talk::Failed(HostError::Garbled(why.to_owned()));
    let per_call = Limits::default().fetch.time;
    let mut deadline = tokio::time::Instant::now() + within;
    let mut granted = Duration::ZERO;
    let mut open = Duration::ZERO;
    process.in_flight = true;
    let mut line =
        serde_json::to_vec(request).map_err(|e| Talk::Failed(HostError::Garbled(e.to_string())))?;
    line.push(b'\n');
    let send = async {
        process.stdin.write_all(&line).await?;
        process.stdin.flush().await
    };
    match tokio::time::timeout_at(deadline, send).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Talk::Failed(e.into())),
        Err(_) => return Err(Talk::TimedOut),
    }
    loop {
        let mut answer = Vec::new();
        let mut limited = (&mut process.stdout).take(MAX_LINE);
        let read = limited.read_until(b'\n', &mut answer);
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(0)) => {
                return Err(Talk::Failed(HostError::Garbled(
                    "the host closed its output".into(),
                )));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Talk::Failed(e.into())),
            Err(_) => return Err(Talk::TimedOut),
        }
        match serde_json::from_slice(&answer) {
            Ok(HostReply::Waiting { millis }) => {
                open = Duration::from_millis(millis).min(per_call);
                granted += open;
                deadline = match deadline.checked_add(open) {
                    Some(later) if granted <= waits => later,
                    _ => return Err(garbled("it asked to wait longer than its calls may")),
                };
            }
            Ok(HostReply::Waited { unused_millis }) => {
                let back = Duration::from_millis(unused_millis).min(open);
                open = Duration::ZERO;
                granted = granted.saturating_sub(back);
                deadline = deadline
                    .checked_sub(back)
                    .ok_or_else(|| garbled("a wait out of bounds"))?;
            }
            Ok(reply) => {
                process.in_flight = false;
                return Ok(reply);
            }
            Err(e) => return Err(Talk::Failed(HostError::Garbled(e.to_string()))),
        }
    }
}
