//! SCIM's error answer (RFC 7644 §3.12): `{"schemas":[…Error], "status":"400",
//! "scimType":"invalidFilter", "detail":"…"}`, served as `application/scim+json`.

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::control::store::StoreError;

/// The error message schema.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// SCIM's media type.
pub const SCIM_JSON: &str = "application/scim+json";

/// Why a SCIM request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// No SCIM token, or a wrong, revoked or malformed one.
    #[error("a valid SCIM bearer token is required")]
    Unauthorized,
    /// The filter does not parse, names an attribute wrongly or compares what cannot be.
    #[error("{0}")]
    InvalidFilter(String),
    /// The body is not JSON, or not the shape the request needs.
    #[error("{0}")]
    InvalidSyntax(String),
    /// A value is missing, of the wrong type, or out of bounds.
    #[error("{0}")]
    InvalidValue(String),
    /// A PATCH path that does not parse or names nothing patchable.
    #[error("{0}")]
    InvalidPath(String),
    /// A PATCH path whose filter matched nothing to change.
    #[error("{0}")]
    NoTarget(String),
    /// An attempt to change what may not change.
    #[error("{0}")]
    Mutability(String),
    /// userName, email or displayName already taken.
    #[error("{0}")]
    Uniqueness(String),
    /// No such resource in this workspace.
    #[error("{0} not found")]
    NotFound(String),
    /// The body is larger than SCIM requests may be.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// A method this server does not offer on this path.
    #[error("method not allowed here")]
    MethodNotAllowed,
    /// Too many requests from this identity provider.
    #[error("too many requests; retry later")]
    TooMany,
    /// The store failed (details are logged, not answered).
    #[error("internal error")]
    Internal,
}

impl ScimError {
    /// The HTTP status and the `scimType`, if the RFC names one.
    fn status(&self) -> (StatusCode, Option<&'static str>) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            Self::InvalidFilter(_) => (StatusCode::BAD_REQUEST, Some("invalidFilter")),
            Self::InvalidSyntax(_) => (StatusCode::BAD_REQUEST, Some("invalidSyntax")),
            Self::InvalidValue(_) => (StatusCode::BAD_REQUEST, Some("invalidValue")),
            Self::InvalidPath(_) => (StatusCode::BAD_REQUEST, Some("invalidPath")),
            Self::NoTarget(_) => (StatusCode::BAD_REQUEST, Some("noTarget")),
            Self::Mutability(_) => (StatusCode::BAD_REQUEST, Some("mutability")),
            Self::Uniqueness(_) => (StatusCode::CONFLICT, Some("uniqueness")),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, None),
            Self::TooMany => (StatusCode::TOO_MANY_REQUESTS, None),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::Uniqueness(format!("{what} already exists")),
            other => {
                tracing::error!(error = %other, "SCIM request failed in the store");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let (status, scim_type) = self.status();
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": status.as_u16().to_string(),
            "detail": self.to_string(),
        });
        if let (Some(kind), Some(map)) = (scim_type, body.as_object_mut()) {
            map.insert("scimType".into(), kind.into());
        }
        let mut response = (
            status,
            [(CONTENT_TYPE, SCIM_JSON)],
            serde_json::to_vec(&body).unwrap_or_default(),
        )
            .into_response();
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        response
    }
}
