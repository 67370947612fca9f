//! The last errors of each function run in this process (delivery's insert functions,
//! the data listener's source functions), newest first, for `GET
//! /api/v1/functions/{id}/errors`. Like the metrics, they are the process's own: a
//! control plane shows those of the functions that ran where it runs.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Errors kept per function.
pub const KEEP: usize = 50;

/// One failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// When it failed.
    pub at: DateTime<Utc>,
    /// The event's `messageId` (insert functions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The destination (insert function) or source (source function) it ran for.
    pub target: String,
    /// `retry`, `invalid`, `error`, `timeout`, `memory`, `too_large` or `load`.
    pub kind: String,
    /// The error (`Name: message`, at most 1000 bytes).
    pub message: String,
}

static ERRORS: LazyLock<Mutex<HashMap<String, VecDeque<Recorded>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Keeps a failed run of `function` (the oldest beyond [`KEEP`] goes).
pub fn record(function: &str, error: Recorded) {
    let Ok(mut all) = ERRORS.lock() else { return };
    let kept = all.entry(function.to_owned()).or_default();
    kept.push_front(error);
    kept.truncate(KEEP);
}

/// The failed runs of `function` kept in this process, newest first.
pub fn last(function: &str) -> Vec<Recorded> {
    ERRORS
        .lock()
        .map(|all| {
            all.get(function)
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_are_kept_and_functions_apart() {
        let at = Utc::now();
        for n in 0..(KEEP + 5) {
            record(
                "fn_test_a",
                Recorded {
                    at,
                    message_id: Some(format!("m-{n}")),
                    target: "d".into(),
                    kind: "error".into(),
                    message: "Error: x".into(),
                },
            );
        }
        let kept = last("fn_test_a");
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0].message_id.as_deref(), Some("m-54"), "newest first");
        assert!(last("fn_test_b").is_empty());
    }
}
