//! Every answer the Tracking API gives, and the one place errors become responses.
//!
//! Error bodies are always `{"success":false,"code","message","error"}`: Python's SDK
//! reads `code` and `message`, Ruby's reads `error` (see `sluice-decisions.md`).

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::{auth, body};
use crate::catalog::KeyRejection;
use crate::event::{DecodeError, ItemRejection};
use crate::log;

/// The response body type of every Sluice endpoint.
pub type Reply = Response<Full<Bytes>>;

/// Header carrying the seconds until a throttled client may retry.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
const JSON: &str = "application/json";
const OK_BODY: &[u8] = br#"{"success":true}"#;

/// Why a request was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Path not served.
    NotFound,
    /// Method not allowed on this path.
    MethodNotAllowed(&'static str),
    /// Credentials missing, malformed, or header and body disagreeing.
    Credentials(auth::Problem),
    /// The catalog refused the key.
    WriteKey(KeyRejection),
    /// The source is over its rate limit.
    RateLimited {
        /// Seconds until a request may succeed.
        retry_after: u64,
    },
    /// A monthly event quota the source draws on is used up.
    QuotaExceeded {
        /// Seconds until the next month.
        retry_after: u64,
    },
    /// The client address had too many failed key lookups this minute.
    KeyFailures {
        /// Seconds until it may try again.
        retry_after: u64,
    },
    /// The `Host` header is not a plain host name or address.
    InvalidHost,
    /// Too many requests in flight on this instance.
    Overloaded,
    /// The body could not be read.
    Body(body::Problem),
    /// The body could not be decoded.
    Decode(DecodeError),
    /// The single message of a single-message route is invalid.
    Message(ItemRejection),
    /// The event log did not take the events.
    Log(log::AppendError),
    /// The request would store more than `limits.max_stored_request_bytes` (a small
    /// body can expand: its batch `context` is copied into every event).
    StoredTooLarge {
        /// `limits.max_stored_request_bytes`.
        limit: usize,
    },
    /// A source function's endpoint was called without its secret (or a wrong one).
    FunctionSecret,
    /// A source function did not make events of the request.
    Function(FunctionProblem),
}

/// Why a source function made no events of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionProblem {
    /// The body is not UTF-8 text.
    NotText,
    /// The function has no `onRequest`.
    NoHandler,
    /// It threw `ValidationError` (or `InvalidEventPayload`, `EventNotSupported`).
    Invalid,
    /// It threw `RetryError`.
    Retry,
    /// It ran past its time limit.
    Timeout,
    /// It threw anything else, ran out of memory, or answered too much.
    Error,
    /// Its code does not load.
    Load,
    /// Its process could not be used.
    Unavailable,
}

/// Status, code and message of a rejection: the one exhaustive mapping.
fn describe(r: Rejection) -> (StatusCode, &'static str, Cow<'static, str>) {
    use StatusCode as S;
    match r {
        Rejection::NotFound => (S::NOT_FOUND, "not_found", "no such endpoint".into()),
        Rejection::FunctionSecret => (
            S::UNAUTHORIZED,
            "invalid_function_secret",
            "this source function's secret is missing or wrong: send it as Authorization: Bearer <secret> or ?token=<secret>".into(),
        ),
        Rejection::Function(FunctionProblem::NotText) => (
            S::BAD_REQUEST,
            "body_not_text",
            "a source function takes a body of UTF-8 text (JSON)".into(),
        ),
        Rejection::Function(FunctionProblem::NoHandler) => (
            S::INTERNAL_SERVER_ERROR,
            "function_no_handler",
            "the source function defines no onRequest handler".into(),
        ),
        Rejection::Function(FunctionProblem::Invalid) => (
            S::BAD_REQUEST,
            "function_invalid",
            "the source function refused the request (ValidationError)".into(),
        ),
        Rejection::Function(FunctionProblem::Retry) => (
            S::SERVICE_UNAVAILABLE,
            "function_retry",
            "the source function asked for the request to be sent again later (RetryError)".into(),
        ),
        Rejection::Function(FunctionProblem::Timeout) => (
            S::INTERNAL_SERVER_ERROR,
            "function_timeout",
            "the source function ran past its time limit".into(),
        ),
        Rejection::Function(FunctionProblem::Error) => (
            S::INTERNAL_SERVER_ERROR,
            "function_error",
            "the source function failed (it threw, ran out of memory or answered too much)".into(),
        ),
        Rejection::Function(FunctionProblem::Load) => (
            S::INTERNAL_SERVER_ERROR,
            "function_load",
            "the source function's code does not load".into(),
        ),
        Rejection::Function(FunctionProblem::Unavailable) => (
            S::SERVICE_UNAVAILABLE,
            "function_unavailable",
            "the source function could not be run; retry shortly".into(),
        ),
        Rejection::MethodNotAllowed(_) => (
            S::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint".into(),
        ),
        Rejection::Credentials(auth::Problem::Missing) => (
            S::UNAUTHORIZED,
            "missing_write_key",
            "no write key: send it as the HTTP Basic user or as writeKey in the body".into(),
        ),
        Rejection::Credentials(auth::Problem::MalformedHeader) => (
            S::UNAUTHORIZED,
            "invalid_authorization",
            "the Authorization header is not valid Basic credentials".into(),
        ),
        Rejection::Credentials(auth::Problem::Mismatch) => (
            S::UNAUTHORIZED,
            "write_key_mismatch",
            "the Authorization header and the body's writeKey name different keys".into(),
        ),
        Rejection::WriteKey(
            KeyRejection::Unknown
            | KeyRejection::Revoked
            | KeyRejection::Expired
            | KeyRejection::SourceDisabled,
        ) => (
            S::UNAUTHORIZED,
            "invalid_write_key",
            "invalid write key: unknown, revoked, expired, or its source is disabled".into(),
        ),
        Rejection::RateLimited { .. } => (
            S::TOO_MANY_REQUESTS,
            "rate_limited",
            "this source is over its rate limit; retry after the given seconds".into(),
        ),
        Rejection::QuotaExceeded { .. } => (
            S::TOO_MANY_REQUESTS,
            "quota_exceeded",
            "this source's monthly event quota is used up; retry after the given seconds (the next month)".into(),
        ),
        Rejection::KeyFailures { .. } => (
            S::TOO_MANY_REQUESTS,
            "too_many_failed_keys",
            "too many requests with an invalid write key from this address; retry after the given seconds".into(),
        ),
        Rejection::InvalidHost => (
            S::BAD_REQUEST,
            "invalid_host",
            "the Host header is not a host name or address (or set server.public_url)".into(),
        ),
        Rejection::Overloaded => (
            S::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly".into(),
        ),
        Rejection::StoredTooLarge { limit } => (
            S::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request's events, once expanded (batch context copied into each), are larger than {limit} bytes; send smaller batches"
            )
            .into(),
        ),
        Rejection::Body(problem) => {
            let (status, code) = match problem {
                body::Problem::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "request_too_large"),
                body::Problem::Timeout => (S::REQUEST_TIMEOUT, "request_timeout"),
                body::Problem::Interrupted => (S::BAD_REQUEST, "body_interrupted"),
                body::Problem::UnsupportedEncoding => {
                    (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
                }
                body::Problem::InvalidGzip => (S::BAD_REQUEST, "invalid_gzip"),
            };
            (status, code, problem.to_string().into())
        }
        Rejection::Decode(error) => {
            let (status, code) = match error {
                DecodeError::InvalidJson => (S::BAD_REQUEST, "invalid_json"),
                DecodeError::TooDeep { .. } => (S::BAD_REQUEST, "json_too_deep"),
                DecodeError::NotAnObject => (S::BAD_REQUEST, "invalid_body"),
                DecodeError::WriteKeyNotString => (S::UNAUTHORIZED, "invalid_write_key"),
                DecodeError::MissingBatch => (S::BAD_REQUEST, "missing_batch"),
                DecodeError::BatchNotArray => (S::BAD_REQUEST, "invalid_batch"),
                DecodeError::TooManyItems { .. } => (S::BAD_REQUEST, "batch_too_many_items"),
                DecodeError::MessageTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "message_too_large"),
                DecodeError::DuplicateKey => (S::BAD_REQUEST, "duplicate_key"),
            };
            (status, code, error.to_string().into())
        }
        Rejection::Message(item) => (S::BAD_REQUEST, item.code(), item.message()),
        Rejection::Log(log::AppendError::Full) => (
            S::SERVICE_UNAVAILABLE,
            "log_full",
            "event storage is full; retry later".into(),
        ),
        Rejection::Log(log::AppendError::Io) => (
            S::SERVICE_UNAVAILABLE,
            "log_unavailable",
            "event storage failed to write; retry later".into(),
        ),
        Rejection::Log(log::AppendError::Closed) => (
            S::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry".into(),
        ),
    }
}

impl Rejection {
    /// Stable snake_case code (also a bounded metric label).
    pub fn code(self) -> &'static str {
        describe(self).1
    }

    /// Seconds the client should wait before retrying, for retryable refusals.
    fn retry_after(self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after }
            | Self::QuotaExceeded { retry_after }
            | Self::KeyFailures { retry_after } => Some(retry_after),
            Self::Overloaded => Some(1),
            Self::Log(_) => Some(log::RETRY_AFTER_SECS),
            // Retrying the same request will not help (or, for a function that asked
            // for a retry, the status says so and the client's back-off decides).
            Self::NotFound
            | Self::MethodNotAllowed(_)
            | Self::Credentials(_)
            | Self::WriteKey(_)
            | Self::InvalidHost
            | Self::Body(_)
            | Self::Decode(_)
            | Self::Message(_)
            | Self::StoredTooLarge { .. }
            | Self::FunctionSecret
            | Self::Function(_) => None,
        }
    }

    /// The HTTP response.
    pub fn into_reply(self) -> Reply {
        let (status, code, message) = describe(self);
        let body = serde_json::json!({
            "success": false,
            "code": code,
            "message": message,
            "error": message,
        });
        let mut reply = json(status, body.to_string().into());
        if let Some(secs) = self.retry_after() {
            let headers = reply.headers_mut();
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            if matches!(
                self,
                Self::RateLimited { .. } | Self::QuotaExceeded { .. } | Self::KeyFailures { .. }
            ) {
                headers.insert(X_RATELIMIT_RESET, HeaderValue::from(secs));
            }
        }
        if let Self::MethodNotAllowed(allow) = self {
            reply
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
        }
        reply
    }
}

/// One refused item of a batch, as listed in the 200 body.
#[derive(Debug, Serialize)]
pub struct RejectedItem {
    /// Position in the batch.
    pub index: usize,
    /// Stable code.
    pub code: &'static str,
    /// Human message.
    pub message: Cow<'static, str>,
}

/// `200 {"success":true}`, plus `rejected` when some batch items were refused and
/// `blocked` when a tracking plan blocked some (200 all the same, so SDKs do not retry).
pub fn accepted(rejected: &[RejectedItem], blocked: u64) -> Reply {
    if rejected.is_empty() && blocked == 0 {
        return json(StatusCode::OK, Bytes::from_static(OK_BODY));
    }
    let mut body = serde_json::json!({ "success": true });
    if !rejected.is_empty() {
        body["rejected"] = serde_json::to_value(rejected).unwrap_or_default();
    }
    if blocked > 0 {
        body["blocked"] = blocked.into();
    }
    json(StatusCode::OK, body.to_string().into())
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    reply
}
