//! CORS for browser SDKs: any origin may send (write keys are public by design), and
//! credentialed requests work because the origin is echoed rather than `*`.

use http::HeaderMap;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, HeaderValue, ORIGIN, VARY,
};
use http::{Response, StatusCode};
use http_body_util::Full;

use super::response::Reply;

const ALLOWED_METHODS: &str = "POST, OPTIONS";
const ALLOWED_HEADERS: &str = "Content-Type, Authorization, X-Retry-Count, Content-Encoding";
const MAX_AGE_SECS: u32 = 86_400;

/// The answer to an `OPTIONS` preflight.
pub fn preflight(request: &HeaderMap) -> Reply {
    let mut reply = Response::new(Full::default());
    *reply.status_mut() = StatusCode::NO_CONTENT;
    let headers = reply.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOWED_HEADERS),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
    decorate(request, &mut reply);
    reply
}

/// Adds the origin-echo headers to any response to a request that has an `Origin`.
pub fn decorate(request: &HeaderMap, reply: &mut Reply) {
    let Some(origin) = request.get(ORIGIN) else {
        return;
    };
    let headers = reply.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(VARY, HeaderValue::from_static("Origin"));
}
