//! A posted form (`application/x-www-form-urlencoded`), read as its name/value pairs:
//! checkboxes post one pair per box ticked.

use super::Refusal;
use axum::http::StatusCode;

/// A posted form's fields, in order.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads `body`; anything that is not a form is a `400` page.
    pub fn read(body: &[u8]) -> Result<Self, Refusal> {
        serde_urlencoded::from_bytes(body)
            .map(Self)
            .map_err(|_| Refusal::Api {
                status: StatusCode::BAD_REQUEST,
                message: "The form could not be read.".into(),
            })
    }

    /// The first value of `name`, trimmed ('' when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The first value of `name` as typed (a password: spaces are part of it).
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The value of `name`, `None` when absent or blank.
    pub fn some(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The session's CSRF token the form carries (the API checks it).
    pub fn csrf(&self) -> &str {
        self.get("csrf")
    }
}
