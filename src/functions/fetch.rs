//! `fetch` for function code: the one way out of the sandbox to the network, behind the
//! same private-address guard as webhook destinations (unless
//! `delivery.allow_private_destinations`), with a time budget per invocation, a cap on
//! calls and on the size of each response.
//!
//! The engine is synchronous, so a call blocks the function's thread until the answer
//! is in (the engine's own time limit is paused meanwhile); the function sees a promise
//! all the same. Only `http` and `https` URLs are taken; proxies from the environment
//! are never used (the guard must see the address the connection goes to), and a
//! redirect is followed (at most five) only to a URL the guard lets through, a name's
//! addresses being filtered by the client's resolver like a webhook's.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::catalog::reach::{PublicOnly, refusal_by_text};

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 5;
/// Longest URL a call may name, in bytes.
const MAX_URL: usize = 8 << 10;
/// Most bytes a call's header names and values may hold together.
const MAX_HEADERS: usize = 64 << 10;

/// What `fetch` may do in one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Time all the invocation's calls may take together.
    pub time: Duration,
    /// Calls one invocation may make (refused ones count too).
    pub calls: u32,
    /// Size of a request's or a response's body, in bytes.
    pub bytes: usize,
    /// Whether private, loopback and link-local addresses may be reached.
    pub allow_private: bool,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            time: Duration::from_secs(5),
            calls: 10,
            bytes: 1 << 20,
            allow_private: false,
        }
    }
}

/// A call as the prelude hands it over (JSON).
#[derive(Deserialize)]
struct Call {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: Option<String>,
    /// `manual`: a redirect is answered as it is, not followed.
    #[serde(default)]
    redirect: Option<String>,
}

/// How a call treats redirects: each is a client of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redirects {
    /// Followed (through the guard).
    Follow,
    /// Followed within the origin asked; one to another origin is answered as it is (a
    /// call with headers of its own, which may be secrets, never sends them elsewhere).
    SameOrigin,
    /// Never followed.
    Manual,
}

/// A call's wait on the network, as a watchdog outside the process is told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A call starts that may take this long: wait as much more.
    Starts(Duration),
    /// It ended with this much of that time unused: take it back.
    Ends(Duration),
}

/// Told of each call's wait (so a watchdog's extra time is what the calls really took).
pub type WaitHook = Arc<dyn Fn(Wait) + Send + Sync>;

type Client = Result<reqwest::Client, String>;

/// Makes one function's calls: its runtime and clients are built on first use.
pub(super) struct Fetcher {
    limits: FetchLimits,
    runtime: OnceLock<Result<tokio::runtime::Runtime, String>>,
    clients: [OnceLock<Client>; 3],
    /// Calls made and time spent in the invocation under way.
    used: Mutex<(u32, Duration)>,
    /// The code is loading: no call may be made (a watchdog outside would not know).
    loading: AtomicBool,
    on_wait: Mutex<Option<WaitHook>>,
}

impl Fetcher {
    pub(super) fn new(limits: FetchLimits) -> Self {
        Self {
            limits,
            runtime: OnceLock::new(),
            clients: [OnceLock::new(), OnceLock::new(), OnceLock::new()],
            used: Mutex::new((0, Duration::ZERO)),
            loading: AtomicBool::new(false),
            on_wait: Mutex::new(None),
        }
    }

    /// A new invocation starts with its whole budget.
    pub(super) fn begin(&self) {
        if let Ok(mut used) = self.used.lock() {
            *used = (0, Duration::ZERO);
        }
    }

    /// While the code loads, calls are refused.
    pub(super) fn loading(&self, loading: bool) {
        self.loading.store(loading, Ordering::Relaxed);
    }

    pub(super) fn on_wait(&self, hook: WaitHook) {
        if let Ok(mut slot) = self.on_wait.lock() {
            *slot = Some(hook);
        }
    }

    /// Makes the call `request` describes (JSON from the prelude): the answer as JSON
    /// `{status, statusText, url, redirected, headers, body}`, or why it failed, and
    /// the time spent waiting on the network.
    pub(super) fn fetch(&self, request: &str) -> (Result<String, String>, Duration) {
        let checked = self.take_call().and_then(|within| {
            let (call, url) = self.check(request)?;
            Ok((within, call, url))
        });
        let (within, call, url) = match checked {
            Ok(checked) => checked,
            Err(why) => return (Err(why), Duration::ZERO),
        };
        self.tell(Wait::Starts(within));
        let began = Instant::now();
        let answer = self.send(call, url, within);
        let took = began.elapsed();
        if let Ok(mut used) = self.used.lock() {
            used.1 += took;
        }
        self.tell(Wait::Ends(within.saturating_sub(took)));
        (answer, took)
    }

    /// The call, read and checked: sizes, scheme, the address guard. Messages never
    /// repeat the URL (it may carry credentials).
    fn check(&self, request: &str) -> Result<(Call, reqwest::Url), String> {
        if request.len() > self.limits.bytes + MAX_URL + MAX_HEADERS + (4 << 10) {
            return Err("fetch: the request is too large".into());
        }
        let call: Call =
            serde_json::from_str(request).map_err(|_| "fetch: a bad request".to_owned())?;
        if call.url.len() > MAX_URL {
            return Err(format!("fetch: a URL may be at most {MAX_URL} bytes"));
        }
        let header_bytes: usize = call.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if header_bytes > MAX_HEADERS {
            return Err(format!(
                "fetch: headers may hold at most {MAX_HEADERS} bytes"
            ));
        }
        let url = reqwest::Url::parse(&call.url).map_err(|e| format!("fetch: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "fetch: only http and https URLs can be fetched, not {}:",
                url.scheme()
            ));
        }
        if !self.limits.allow_private
            && let Some(why) = refusal_by_text(url.as_str())
        {
            return Err(format!("fetch refused: {why}"));
        }
        if call
            .body
            .as_ref()
            .is_some_and(|b| b.len() > self.limits.bytes)
        {
            return Err(format!(
                "fetch: a request body may be at most {} bytes",
                self.limits.bytes
            ));
        }
        Ok((call, url))
    }

    fn tell(&self, wait: Wait) {
        if let Ok(hook) = self.on_wait.lock()
            && let Some(hook) = hook.as_ref()
        {
            hook(wait);
        }
    }

    /// Counts a call; the time it may take (what is left of the budget).
    fn take_call(&self) -> Result<Duration, String> {
        if self.loading.load(Ordering::Relaxed) {
            return Err(
                "fetch cannot be called while the function loads: call it in a handler".into(),
            );
        }
        let mut used = self
            .used
            .lock()
            .map_err(|_| "fetch: unavailable".to_owned())?;
        if used.0 >= self.limits.calls {
            return Err(format!(
                "fetch: at most {} calls per invocation",
                self.limits.calls
            ));
        }
        used.0 += 1;
        let left = self.limits.time.saturating_sub(used.1);
        if left.is_zero() {
            return Err(format!(
                "fetch: the invocation's {} ms for fetch calls are used up",
                self.limits.time.as_millis()
            ));
        }
        Ok(left)
    }

    fn send(&self, call: Call, url: reqwest::Url, within: Duration) -> Result<String, String> {
        let runtime = self
            .runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("fetch: unavailable ({e})"))
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let redirects = if call.redirect.as_deref() == Some("manual") {
            Redirects::Manual
        } else if call.headers.iter().any(|(name, _)| {
            !name.eq_ignore_ascii_case("accept") && !name.eq_ignore_ascii_case("content-type")
        }) {
            Redirects::SameOrigin
        } else {
            Redirects::Follow
        };
        let client = self.clients[redirects as usize]
            .get_or_init(|| self.client(redirects))
            .as_ref()
            .map_err(Clone::clone)?;
        let method = reqwest::Method::from_bytes(
            call.method
                .as_deref()
                .unwrap_or("GET")
                .to_ascii_uppercase()
                .as_bytes(),
        )
        .map_err(|_| "fetch: not an HTTP method".to_owned())?;
        let asked = url.to_string();
        let mut request = client.request(method, url).timeout(within);
        for (name, value) in &call.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| "fetch: not a header name".to_owned())?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| "fetch: not a header value".to_owned())?;
            request = request.header(name, value);
        }
        if let Some(body) = call.body {
            request = request.body(body);
        }
        let bytes = self.limits.bytes;
        let exchange = async move {
            let mut response = request.send().await.map_err(failure)?;
            let status = response.status();
            let url = response.url().to_string();
            let mut headers: BTreeMap<String, String> = BTreeMap::new();
            for (name, value) in response.headers() {
                let value = String::from_utf8_lossy(value.as_bytes());
                headers
                    .entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert_with(|| value.into_owned());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(failure)? {
                if body.len() + chunk.len() > bytes {
                    return Err(format!("fetch: the response is larger than {bytes} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(serde_json::json!({
                "status": status.as_u16(),
                "statusText": status.canonical_reason().unwrap_or(""),
                "redirected": url != asked,
                "url": url,
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            })
            .to_string())
        };
        // Its own thread: the caller may itself be inside an async runtime.
        std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(exchange))
                .join()
                .unwrap_or_else(|_| Err("fetch: failed".to_owned()))
        })
    }

    fn client(&self, redirects: Redirects) -> Client {
        crate::tls::install_crypto_provider();
        let allow_private = self.limits.allow_private;
        let policy = match redirects {
            Redirects::Manual => reqwest::redirect::Policy::none(),
            Redirects::Follow | Redirects::SameOrigin => {
                reqwest::redirect::Policy::custom(move |attempt| {
                    let first = attempt.previous().first().map(reqwest::Url::origin);
                    if redirects == Redirects::SameOrigin
                        && first.is_some_and(|o| o != attempt.url().origin())
                    {
                        return attempt.stop();
                    }
                    match redirect_refusal(
                        attempt.url().as_str(),
                        attempt.previous().len(),
                        allow_private,
                    ) {
                        Some(why) => attempt.error(why),
                        None => attempt.follow(),
                    }
                })
            }
        };
        let mut builder = reqwest::Client::builder()
            .redirect(policy)
            .no_proxy()
            .user_agent(concat!("sluice-functions/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        builder
            .build()
            .map_err(|e| format!("fetch: unavailable ({e})"))
    }
}

/// Why a redirect to `url`, after `hops` requests, is not followed. The client's
/// resolver never hands out a private address for a name, but an address written in the
/// `Location` is connected to directly: it is checked here.
fn redirect_refusal(url: &str, hops: usize, allow_private: bool) -> Option<String> {
    if hops > MAX_REDIRECTS {
        return Some(format!("more than {MAX_REDIRECTS} redirects"));
    }
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Some("a redirect refused: only http and https URLs can be fetched".into());
    }
    if allow_private {
        return None;
    }
    refusal_by_text(url).map(|why| format!("a redirect refused: {why}"))
}

/// A failed call as the function sees it: timeouts named, the rest by the client's own
/// words (the source chain, where the reason is), the URL left out (it may carry
/// credentials).
fn failure(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "fetch: timed out".into();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    format!("fetch failed: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_to_private_addresses_or_too_far_are_not_followed() {
        for url in [
            "http://127.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://localhost:8080/",
            "http://2130706433/",
        ] {
            let why = redirect_refusal(url, 1, false).unwrap_or_default();
            assert!(why.contains("private"), "{url}: {why}");
            assert_eq!(redirect_refusal(url, 1, true), None, "{url}");
        }
        assert!(redirect_refusal("file:///etc/passwd", 1, true).is_some());
        assert_eq!(redirect_refusal("https://example.com/", 1, false), None);
        assert_eq!(
            redirect_refusal("https://example.com/", MAX_REDIRECTS, false),
            None
        );
        assert!(redirect_refusal("https://example.com/", MAX_REDIRECTS + 1, false).is_some());
    }
}
