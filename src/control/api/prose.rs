//! Free text the API takes: descriptions, reasons, notes and reviewers' comments.

use serde::Deserialize;
use utoipa::ToSchema;

use super::ApiError;

/// A description, reason or comment: 1 to 2000 characters; line breaks and tabs allowed,
/// other control characters not. Trimmed.
pub fn prose(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if value.chars().count() > 2000 {
        return Err(ApiError::field(field, "at most 2000 characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::field(
            field,
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(value.to_owned())
}

/// `{"comment": …}`, required: why something was refused or ended.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Why {
    /// Why (1 to 2000 characters).
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub comment: String,
}

/// `{"comment": …}`, optional: a remark kept with a decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Remark {
    /// A comment kept with the decision (1 to 2000 characters).
    #[serde(default)]
    #[schema(
        max_length = 2000,
        pattern = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f]*$"
    )]
    pub comment: Option<String>,
}

impl Remark {
    /// The comment checked, or empty.
    pub fn text(&self) -> Result<String, ApiError> {
        self.comment
            .as_deref()
            .map_or_else(|| Ok(String::new()), |c| prose("comment", c))
    }
}
