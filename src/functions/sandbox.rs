//! One function's sandbox: a QuickJS runtime of its own, loaded once with the
//! function's code and settings and reused for every event (no engine start per
//! event), under a time limit per invocation, a memory limit, a stack limit and an
//! output limit. The engine has no file system, process or environment: QuickJS's
//! own library (`std`, `os`) is not linked in. Its one way out is `fetch`
//! ([`super::fetch`]), behind the private-address guard of webhook destinations.
//!
//! A function that runs past its time or memory is stopped, its event counted as
//! failed, and its sandbox rebuilt from the code, so the next invocation starts clean.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rquickjs::{Context, Ctx, Exception, Function, Object, Runtime};

use super::fetch::{FetchLimits, Fetcher, WaitHook};

/// What the prelude gives every function (error classes, `console`, frozen built-ins).
const PRELUDE: &str = include_str!("prelude.js");

/// The limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time one invocation may run (the engine runs no I/O, so this is CPU time).
    pub time: Duration,
    /// Memory the function's heap may hold, in bytes.
    pub memory: usize,
    /// Stack the function's calls may use, in bytes.
    pub stack: usize,
    /// Size of the JSON a handler may return, in bytes.
    pub output: usize,
    /// What `fetch` may do in one invocation.
    pub fetch: FetchLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            time: Duration::from_millis(100),
            memory: 32 << 20,
            stack: 512 << 10,
            output: 1 << 20,
            fetch: FetchLimits::default(),
        }
    }
}

/// The handler an event calls, by its type (`onTrack` for `track`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `onTrack`.
    Track,
    /// `onIdentify`.
    Identify,
    /// `onPage`.
    Page,
    /// `onScreen`.
    Screen,
    /// `onGroup`.
    Group,
    /// `onAlias`.
    Alias,
    /// `onBatch` (the events as an array).
    Batch,
    /// `onRequest` (a source function: a webhook's request in, the events its
    /// `Segment.track(…)` calls made out, as an array).
    Request,
}

impl Handler {
    /// The handler for an event of `kind` (its `type`), if Segment names one.
    #[must_use]
    pub fn of(kind: &str) -> Option<Self> {
        Some(match kind {
            "track" => Self::Track,
            "identify" => Self::Identify,
            "page" => Self::Page,
            "screen" => Self::Screen,
            "group" => Self::Group,
            "alias" => Self::Alias,
            _ => return None,
        })
    }

    /// The handler's name in the function's code.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Track => "onTrack",
            Self::Identify => "onIdentify",
            Self::Page => "onPage",
            Self::Screen => "onScreen",
            Self::Group => "onGroup",
            Self::Alias => "onAlias",
            Self::Batch => "onBatch",
            Self::Request => "onRequest",
        }
    }
}

/// Why an invocation failed, and so what becomes of its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The function threw `RetryError`: the event is tried again later.
    Retry,
    /// The function threw `ValidationError`, `InvalidEventPayload` or
    /// `EventNotSupported`: the event is refused, not retried.
    Invalid,
    /// Any other error, or an answer that is not an event: not retried (the same code
    /// fails the same way), kept with the dead letters.
    Error,
    /// The time limit ran out.
    Timeout,
    /// The memory limit was reached.
    Memory,
    /// The returned event is larger than the output limit.
    TooLarge,
}

impl Failure {
    /// Whether the event is tried again.
    #[must_use]
    pub fn retryable(self) -> bool {
        self == Self::Retry
    }

    /// The failure's name in metrics and the API.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Invalid => "invalid",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::TooLarge => "too_large",
        }
    }
}

/// What an invocation made of its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The event to send (JSON): returned by the handler.
    Event(String),
    /// No handler for the event's type: it goes on unchanged.
    Passed,
    /// The handler returned nothing, or threw `DropEvent`: the event goes nowhere.
    Dropped,
    /// The invocation failed, with the error's message.
    Failed(Failure, String),
}

/// One invocation: its outcome, the lines the function logged, how long it ran.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// What became of the event.
    pub outcome: Outcome,
    /// `console` lines (at most 50, each at most 1000 characters), level first.
    pub logs: Vec<String>,
    /// Time the invocation took.
    pub took: Duration,
}

/// A function that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The engine could not start (no memory).
    #[error("the JavaScript engine could not start: {0}")]
    Engine(String),
    /// The code does not compile, or throws while it loads.
    #[error("the function does not load: {0}")]
    Code(String),
    /// The settings are not a JSON object.
    #[error("the function's settings must be a JSON object")]
    Settings,
}

/// The clock an interrupt handler reads: a deadline, and whether it fired.
#[derive(Debug, Default)]
struct Deadline {
    /// Nanoseconds after `origin` when the invocation must stop (0: none).
    at: AtomicU64,
    fired: AtomicBool,
}

impl Deadline {
    /// Moves the deadline `by` later (time spent waiting on the network is not run time).
    fn extend(&self, by: Duration) {
        let at = self.at.load(Ordering::Relaxed);
        if at != 0 {
            self.at
                .store(at.saturating_add(nanos(by)), Ordering::Relaxed);
        }
    }
}

/// A function, loaded, ready to run events.
pub struct Sandbox {
    runtime: Runtime,
    context: Context,
    deadline: Arc<Deadline>,
    origin: Instant,
    limits: Limits,
    code: Arc<str>,
    settings: Arc<str>,
    fetcher: Arc<Fetcher>,
    /// A limit stopped the last invocation (or it failed outside the function): the
    /// next one starts on a fresh engine.
    stale: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Loads `code` with `settings` (a JSON object) under `limits`: the code runs once
    /// here, under the same limits as an invocation.
    ///
    /// # Errors
    /// The engine cannot start, the code does not load, the settings are not an object.
    pub fn load(
        code: &str,
        settings: &serde_json::Value,
        limits: Limits,
    ) -> Result<Self, LoadError> {
        if !settings.is_object() {
            return Err(LoadError::Settings);
        }
        let fetcher = Arc::new(Fetcher::new(limits.fetch));
        Self::build(
            Arc::from(code),
            Arc::from(settings.to_string()),
            limits,
            fetcher,
        )
    }

    /// Tells `hook` the time each `fetch` may take, before it starts, and what it left
    /// unused, after (a watchdog outside the process extends its deadline by the time
    /// the calls took).
    pub fn on_fetch(&self, hook: WaitHook) {
        self.fetcher.on_wait(hook);
    }

    fn build(
        code: Arc<str>,
        settings: Arc<str>,
        limits: Limits,
        fetcher: Arc<Fetcher>,
    ) -> Result<Self, LoadError> {
        let engine = |e: rquickjs::Error| LoadError::Engine(e.to_string());
        let runtime = Runtime::new().map_err(engine)?;
        runtime.set_memory_limit(limits.memory);
        runtime.set_max_stack_size(limits.stack);
        let deadline = Arc::new(Deadline::default());
        let origin = Instant::now();
        let clock = Arc::clone(&deadline);
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let at = clock.at.load(Ordering::Relaxed);
            let late = at != 0 && nanos(origin.elapsed()) > at;
            if late {
                clock.fired.store(true, Ordering::Relaxed);
            }
            late
        })));
        let context = Context::full(&runtime).map_err(engine)?;
        let sandbox = Self {
            runtime,
            context,
            deadline,
            origin,
            limits,
            code,
            settings,
            fetcher,
            stale: false,
        };
        sandbox.arm();
        sandbox.fetcher.begin();
        sandbox.fetcher.loading(true);
        fetcher_of(&sandbox)?;
        let loaded = sandbox.context.with(|ctx| -> Result<(), String> {
            let thrown = |e: rquickjs::Error| match e {
                rquickjs::Error::Exception => describe(&ctx.catch()),
                other => other.to_string(),
            };
            ctx.eval::<(), _>(PRELUDE).map_err(thrown)?;
            let host: Object = ctx.globals().get("__sluice").map_err(thrown)?;
            let configure: Function = host.get("configure").map_err(thrown)?;
            configure
                .call::<_, ()>((sandbox.settings.as_ref(),))
                .map_err(thrown)?;
            ctx.eval::<(), _>(sandbox.code.as_bytes()).map_err(thrown)?;
            while !sandbox.expired() && ctx.execute_pending_job() {}
            Ok(())
        });
        sandbox.fetcher.loading(false);
        if sandbox.disarm() {
            return Err(LoadError::Code(format!(
                "loading ran past the time limit ({} ms)",
                limits.time.as_millis()
            )));
        }
        loaded.map(|()| sandbox).map_err(LoadError::Code)
    }

    /// The limits it runs under.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn arm(&self) {
        let at = nanos(self.origin.elapsed() + self.limits.time);
        self.deadline.fired.store(false, Ordering::Relaxed);
        self.deadline.at.store(at.max(1), Ordering::Relaxed);
    }

    /// Whether the time limit fired (jobs are no longer run).
    fn expired(&self) -> bool {
        self.deadline.fired.load(Ordering::Relaxed)
    }

    /// Ends the time limit; whether it fired.
    fn disarm(&self) -> bool {
        self.deadline.at.store(0, Ordering::Relaxed);
        self.deadline.fired.load(Ordering::Relaxed)
    }

    /// Runs `handler` on `input` (an event, or for `onBatch` an array of events, as JSON).
    pub fn invoke(&mut self, handler: Handler, input: &str) -> Invocation {
        let started = Instant::now();
        if self.stale {
            match Self::build(
                Arc::clone(&self.code),
                Arc::clone(&self.settings),
                self.limits,
                Arc::clone(&self.fetcher),
            ) {
                Ok(fresh) => *self = fresh,
                Err(e) => {
                    return Invocation {
                        outcome: Outcome::Failed(
                            Failure::Error,
                            format!("the function could not be reloaded: {e}"),
                        ),
                        logs: Vec::new(),
                        took: started.elapsed(),
                    };
                }
            }
        }
        self.arm();
        self.fetcher.begin();
        let ran = self
            .context
            .with(|ctx| -> Result<(String, String), String> {
                let thrown = |e: rquickjs::Error| match e {
                    rquickjs::Error::Exception => describe(&ctx.catch()),
                    other => other.to_string(),
                };
                let host: Object = ctx.globals().get("__sluice").map_err(thrown)?;
                let run: Function = host.get("run").map_err(thrown)?;
                run.call::<_, ()>((handler.name(), input)).map_err(thrown)?;
                while !self.expired() && ctx.execute_pending_job() {}
                let outcome: Function = host.get("outcome").map_err(thrown)?;
                let settled: String = outcome.call(()).map_err(thrown)?;
                let logs: Function = host.get("logs").map_err(thrown)?;
                let logs: String = logs.call(()).map_err(thrown)?;
                Ok((settled, logs))
            });
        let fired = self.disarm();
        let (settled, logs) = match ran {
            Ok(ran) => ran,
            Err(message) => {
                // Failed outside the function's own code: jobs may be left queued.
                self.stale = true;
                (format!("error\n{message}"), "[]".to_owned())
            }
        };
        let outcome = if fired {
            Outcome::Failed(
                Failure::Timeout,
                format!(
                    "ran past its time limit ({} ms)",
                    self.limits.time.as_millis()
                ),
            )
        } else {
            self.outcome(handler, &settled)
        };
        if matches!(
            outcome,
            Outcome::Failed(Failure::Timeout | Failure::Memory, _)
        ) {
            self.stale = true;
        }
        Invocation {
            outcome,
            logs: serde_json::from_str(&logs).unwrap_or_default(),
            took: started.elapsed(),
        }
    }

    /// Reads the prelude's `kind\noutput`.
    fn outcome(&self, handler: Handler, settled: &str) -> Outcome {
        let (kind, out) = settled.split_once('\n').unwrap_or((settled, ""));
        // An event is an object; `onBatch` answers an array (a `toJSON` may have made
        // anything of what the handler returned).
        let shape = if matches!(handler, Handler::Batch | Handler::Request) {
            '['
        } else {
            '{'
        };
        match kind {
            "event" if !out.starts_with(shape) => Outcome::Failed(
                Failure::Error,
                if matches!(handler, Handler::Batch | Handler::Request) {
                    format!(
                        "{} returned something that is not an array of events",
                        handler.name()
                    )
                } else {
                    "the handler returned something that is not an event object".into()
                },
            ),
            "event" if out.len() > self.limits.output => Outcome::Failed(
                Failure::TooLarge,
                format!(
                    "the returned event is {} bytes, over the limit of {}",
                    out.len(),
                    self.limits.output
                ),
            ),
            // `JSON.stringify` writes a lone surrogate as `\udXXX`: no event may carry one.
            "event"
                if out.contains("\\ud")
                    && serde_json::from_str::<serde_json::Value>(out).is_err() =>
            {
                Outcome::Failed(
                    Failure::Error,
                    "the returned event holds text that is not Unicode (a lone surrogate)".into(),
                )
            }
            "event" => Outcome::Event(out.to_owned()),
            "pass" => Outcome::Passed,
            "drop" => Outcome::Dropped,
            "retry" => Outcome::Failed(Failure::Retry, bounded(out.to_owned())),
            "invalid" => Outcome::Failed(Failure::Invalid, bounded(out.to_owned())),
            "" => Outcome::Failed(
                Failure::Error,
                "the handler never settled (it awaited something that does not resolve)".into(),
            ),
            // The engine's own errors (a function's `Error("out of memory")` is its own).
            "null" | "error"
                if kind == "null"
                    || out == "InternalError: out of memory"
                    || out == "InternalError: string too long" =>
            {
                Outcome::Failed(
                    Failure::Memory,
                    format!(
                        "ran out of its memory limit ({} bytes){}",
                        self.limits.memory,
                        if kind == "null" {
                            ", or threw null"
                        } else {
                            ""
                        }
                    ),
                )
            }
            _ => Outcome::Failed(Failure::Error, bounded(out.to_owned())),
        }
    }

    /// Bytes the engine's heap holds now.
    #[must_use]
    pub fn memory(&self) -> u64 {
        u64::try_from(self.runtime.memory_usage().memory_used_size).unwrap_or(0)
    }
}

/// Gives the engine `__sluice_fetch(request JSON) -> answer JSON` (the prelude takes it
/// off the global object and wraps it as `fetch`); its wait on the network stops the
/// deadline's clock (its own work does not).
fn fetcher_of(sandbox: &Sandbox) -> Result<(), LoadError> {
    let fetcher = Arc::clone(&sandbox.fetcher);
    let deadline = Arc::clone(&sandbox.deadline);
    sandbox.context.with(|ctx| {
        let call = move |ctx: Ctx<'_>, request: String| -> rquickjs::Result<String> {
            let (answer, waited) = fetcher.fetch(&request);
            deadline.extend(waited);
            answer.map_err(|message| Exception::throw_type(&ctx, &message))
        };
        let function =
            Function::new(ctx.clone(), call).map_err(|e| LoadError::Engine(e.to_string()))?;
        ctx.globals()
            .set("__sluice_fetch", function)
            .map_err(|e| LoadError::Engine(e.to_string()))
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The longest error message kept, in bytes.
const MAX_MESSAGE: usize = 1000;

/// `text` cut to [`MAX_MESSAGE`] bytes (on a character boundary).
fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A thrown value as text: `Name: message`.
fn describe(value: &rquickjs::Value<'_>) -> String {
    if let Some(e) = value.as_exception() {
        let message = e.message().unwrap_or_default();
        let name = value
            .as_object()
            .and_then(|o| o.get::<_, String>("name").ok())
            .unwrap_or_else(|| "Error".into());
        return bounded(format!("{name}: {message}"));
    }
    if let Some(s) = value.as_string().and_then(|s| s.to_string().ok()) {
        return bounded(s);
    }
    format!("a thrown {}", value.type_name())
}
