//! Browser sessions on the wire: the cookie, the caller it resolves to, and the guard on
//! every change made with it (the session's CSRF token, and the page's origin).
//!
//! The cookie holds 256 random bits; the store keeps their SHA-256 only. It is
//! `HttpOnly; SameSite=Lax; Path=/`, `Secure` (and named with the `__Host-` prefix) when
//! the control plane's public URL is https. A session resolves to the same [`Caller`] as a
//! token and is decided by the same `authorize`, with the person's own rights.

use axum::http::{HeaderMap, HeaderValue, Method};
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq as _;

use crate::control::api::{Api, ApiError, Caller, Forbidden, Unauthenticated, Via};
use crate::control::store::{sessions, users, workspaces};
use crate::control::token;

/// Whatever happens, a session ends this long after sign-in.
pub const ABSOLUTE: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// A session's last use is recorded at most this often.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);
/// Random characters in the cookie's secret (base62: ~256 bits).
const SECRET_CHARS: usize = 43;
/// The header a session-authenticated change carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The cookie's name: `__Host-sluice_session` over https (the browser then refuses it
/// from any other host or path), `sluice_session` otherwise.
pub fn cookie_name(public_url: &str) -> &'static str {
    if secure(public_url) {
        "__Host-sluice_session"
    } else {
        "sluice_session"
    }
}

fn secure(public_url: &str) -> bool {
    public_url.starts_with("https://")
}

/// A new session secret (for the cookie) and CSRF token.
pub fn secrets() -> Result<(String, String), token::NoRandomness> {
    Ok((
        token::random_base62(SECRET_CHARS)?,
        token::random_base62(SECRET_CHARS)?,
    ))
}

/// The digest (lower-case hex) the store keeps for a secret.
pub fn digest(secret: &str) -> String {
    token::digest_of(secret).to_hex()
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(public_url: &str, secret: &str) -> Option<HeaderValue> {
    let secure = if secure(public_url) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}={secret}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie_name(public_url),
        ABSOLUTE.num_seconds()
    ))
    .ok()
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(public_url: &str) -> Option<HeaderValue> {
    let secure = if secure(public_url) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        cookie_name(public_url)
    ))
    .ok()
}

/// The digest of the session cookie the request carries, if it carries a well-formed one.
/// Two cookies of the name (one planted by a sibling host or for another path) make
/// none: which one the browser meant cannot be told.
pub fn presented(headers: &HeaderMap, public_url: &str) -> Option<String> {
    let name = cookie_name(public_url);
    let mut values = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    (value.len() == SECRET_CHARS && value.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| digest(value))
}

/// Whether the request comes from a page of the control plane's own origin: its
/// `Origin` is the public URL's (`control.public_url`) or the host asked (the console
/// served on an address the configuration does not name). A page whose name was rebound
/// to the control plane's address passes the second, but carries no session cookie (the
/// browser keeps those per host); sign-in from it meets the per-account budget. A request
/// without `Origin` is refused (every browser sends it on an unsafe request).
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    origin_of(public_url).is_some_and(|own| own == origin)
        || host.is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"))
}

/// Whether a browser sent this from another origin: it names an `Origin` that is not
/// this one (a request without one is no cross-origin browser request). Sign-in and
/// one-time links refuse such requests: a page elsewhere must not sign a browser in.
pub fn from_elsewhere(headers: &HeaderMap, public_url: &str) -> bool {
    headers.contains_key("origin") && !same_origin(headers, public_url)
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| format!("{scheme}://{host}"))
}

/// A change made with a session must come from our own origin and echo the session's
/// CSRF token (compared in constant time); reads need neither.
pub fn guard(
    method: &Method,
    headers: &HeaderMap,
    session: &sessions::SessionRow,
    public_url: &str,
) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if !same_origin(headers, public_url) {
        return Err(ApiError::Forbidden(Forbidden::Csrf(
            "a change made with a session cookie must come from the console's own origin",
        )));
    }
    if !echoes_token(headers, session) {
        return Err(ApiError::Forbidden(Forbidden::Csrf(
            "a change made with a session cookie needs its X-CSRF-Token",
        )));
    }
    Ok(())
}

/// Whether the request carries the session's CSRF token (`X-CSRF-Token`, compared in
/// constant time): a page of this session made it, not a link from elsewhere.
pub fn echoes_token(headers: &HeaderMap, session: &sessions::SessionRow) -> bool {
    let echoed = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    bool::from(echoed.ct_eq(session.csrf.as_bytes()))
}

/// A request header saying the person did nothing: a page refreshing itself (the
/// console's live numbers). Such a request is answered as any other, but it does not
/// move the session's idle end, so an unattended tab still ends by the workspace's
/// idle limit.
pub const PASSIVE: &str = "x-sluice-passive";

/// What a request with a session cookie knows of itself.
pub struct Presented<'a> {
    /// The cookie secret's digest.
    pub digest: &'a str,
    /// The request's method.
    pub method: &'a Method,
    /// Its headers.
    pub headers: &'a HeaderMap,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Decision time.
    pub now: DateTime<Utc>,
}

/// The caller behind a session cookie: a live session of an active member, and for a
/// change, the CSRF guard passed. Anything else is `401 session_ended` (or 403 for the
/// guard), told apart by nothing else.
pub async fn caller(api: &Api, request: Presented<'_>) -> Result<Caller, ApiError> {
    let ended = || ApiError::Unauthorized(Unauthenticated::SessionEnded);
    let now = request.now;
    let mut conn = api.store.read().await?;
    let session = sessions::by_digest(&mut conn, request.digest)
        .await?
        .filter(|s| s.live(now))
        .ok_or_else(ended)?;
    guard(request.method, request.headers, &session, &api.public_url)?;
    let workspace = workspaces::get(&mut conn, &session.workspace_id)
        .await?
        .ok_or_else(ended)?;
    let user = users::principal(&mut conn, &workspace.id, &session.user_id)
        .await?
        .ok_or_else(ended)?;
    // A use moves the idle end by the workspace's idle limit (a background refresh is
    // no use).
    if now - session.last_seen_at > TOUCH_EVERY && !request.headers.contains_key(PASSIVE) {
        sessions::touch(&mut conn, &session, workspace.sign_in.idle(), now).await?;
    }
    let caller = Caller {
        via: Via::Session(session),
        user,
        workspace,
        ip: request.ip,
        user_agent: request.user_agent,
        now,
    };
    // A deactivated person's session is as dead as a signed-out one.
    if caller.standing().is_some() {
        return Err(ended());
    }
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn the_cookie_is_found_by_name_and_shape_only() {
        let secret = "a".repeat(SECRET_CHARS);
        let h = headers(&[("cookie", &format!("x=1; sluice_session={secret}; y=2"))]);
        assert_eq!(presented(&h, "http://cp:8081"), Some(digest(&secret)));
        // Over https only the __Host- name counts.
        assert_eq!(presented(&h, "https://cp.example.com"), None);
        let short = headers(&[("cookie", "sluice_session=abc")]);
        assert_eq!(presented(&short, "http://cp:8081"), None);
        let other = "b".repeat(SECRET_CHARS);
        let two = headers(&[(
            "cookie",
            &format!("sluice_session={secret}; sluice_session={other}"),
        )]);
        assert_eq!(
            presented(&two, "http://cp:8081"),
            None,
            "two cookies of the name"
        );
    }

    #[test]
    fn the_cookie_flags_follow_the_public_url() {
        let plain = set_cookie("http://cp:8081", "s").expect("cookie");
        let plain = plain.to_str().expect("ascii");
        assert!(
            plain.starts_with("sluice_session=s; Path=/; HttpOnly; SameSite=Lax"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"));
        let tls = set_cookie("https://cp.example.com", "s").expect("cookie");
        let tls = tls.to_str().expect("ascii");
        assert!(
            tls.starts_with("__Host-sluice_session=s;") && tls.ends_with("; Secure"),
            "{tls}"
        );
    }

    #[test]
    fn origins_are_the_public_urls_or_the_hosts() {
        let public = "https://cp.example.com/console";
        assert!(same_origin(
            &headers(&[("origin", "https://cp.example.com")]),
            public
        ));
        assert!(same_origin(
            &headers(&[("origin", "http://127.0.0.1:9"), ("host", "127.0.0.1:9")]),
            public
        ));
        assert!(!same_origin(&headers(&[("origin", "null")]), public));
        assert!(!same_origin(
            &headers(&[("origin", "https://evil.example")]),
            public
        ));
        assert!(!same_origin(
            &headers(&[("origin", "https://cp.example.com.evil.example")]),
            public
        ));
        assert!(!same_origin(&headers(&[]), public), "no Origin");
    }
}
