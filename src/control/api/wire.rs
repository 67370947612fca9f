//! The pieces every answer shares: the `{"data": …}` envelope, a list's `pagination`,
//! `{"status":"SUCCESS"}`, the error envelope and a label. Each resource's own answer
//! types live in its file; the OpenAPI document is generated from the same types.

use serde::Serialize;
use utoipa::ToSchema;

/// `{"data": …}`: every successful answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// `pagination` of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// This page's cursor (`MA` on the first page).
    pub current: String,
    /// The next page's cursor (absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How many items the whole list has (lists held in memory only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_entries: Option<usize>,
}

/// The outcome a [`Status`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Outcome {
    /// The change was made.
    #[serde(rename = "SUCCESS")]
    Success,
}

/// `{"status":"SUCCESS"}`: the answer to deletes and removals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Status {
    /// Always `SUCCESS`.
    pub status: Outcome,
}

impl Status {
    /// `{"status":"SUCCESS"}`.
    pub const SUCCESS: Self = Self {
        status: Outcome::Success,
    };
}

/// `{"errors":[…]}`: every refusal.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// One error (Sluice reports the first problem found).
    pub errors: Vec<ErrorItem>,
}

/// One error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorItem {
    /// `validation`, `invalid_token`, `token_expired`, `token_revoked`, `forbidden`,
    /// `not_found`, `method_not_allowed`, `conflict`, `too_large`, `rate_limited`,
    /// `unsupported`, `internal` (and `link` on setup pages).
    #[serde(rename = "type")]
    pub kind: String,
    /// What is wrong, for people.
    pub message: String,
    /// The field (JSON path or query key) at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A label: `{"key", "value"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Label {
    /// Key, e.g. `environment`.
    pub key: String,
    /// Value, e.g. `prod`.
    pub value: String,
}

impl Label {
    /// The label `key: value`.
    pub fn new(key: &str, value: &str) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// An answer as a JSON document, for the audit log (which keeps what was answered).
pub fn document(answer: &impl Serialize) -> Result<serde_json::Value, super::ApiError> {
    serde_json::to_value(answer).map_err(|error| {
        tracing::error!(%error, "an answer did not serialize");
        super::ApiError::Internal
    })
}
