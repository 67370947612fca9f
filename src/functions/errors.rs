//! The last errors of each function run in this process (delivery's insert functions,
//! the data listener's source functions), newest first, for `GET
//! /api/v1/functions/{id}/errors`. A process that follows a remote control plane also
//! queues them ([`pending`]) for [`super::report`] to send there, where they are kept
//! with those of every other node.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Errors kept per function.
pub const KEEP: usize = 50;

/// Errors waiting to be reported at most (the oldest go first when the control plane
/// cannot be reached for long).
pub const PENDING_MAX: usize = 500;

/// One failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// The node it ran on, for one another process reported (its credential's name, and
    /// its `--node-name` when that differs). Set by the control plane, never taken from
    /// a report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A failed run as a node reports it: its id (a resent report stores nothing twice),
/// the function's id and the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    /// Made by the node when the run failed (1 to 64 of `A-Z a-z 0-9 - _`).
    pub id: String,
    /// The function.
    pub function: String,
    /// The run.
    #[serde(flatten)]
    pub error: Recorded,
}

/// Runs dropped because the queue was full, since the reporter last said so.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Runs dropped from a full queue since the last call.
pub fn dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

/// Whether failed runs are queued for a remote control plane (set by the reporter).
static REPORTING: AtomicBool = AtomicBool::new(false);

static PENDING: LazyLock<Mutex<VecDeque<Reported>>> = LazyLock::new(|| Mutex::new(VecDeque::new()));

/// From now on, failed runs are also queued for [`pending`].
pub fn report_from_now() {
    REPORTING.store(true, Ordering::Relaxed);
}

/// The failed runs queued since the last call, oldest first.
pub fn pending() -> Vec<Reported> {
    PENDING
        .lock()
        .map(|mut queue| queue.drain(..).collect())
        .unwrap_or_default()
}

/// Puts back runs whose report failed, before any queued since (the oldest beyond
/// [`PENDING_MAX`] go).
pub fn requeue(runs: Vec<Reported>) {
    let Ok(mut queue) = PENDING.lock() else {
        return;
    };
    for run in runs.into_iter().rev() {
        queue.push_front(run);
    }
    while queue.len() > PENDING_MAX {
        queue.pop_front();
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

static ERRORS: LazyLock<Mutex<HashMap<String, VecDeque<Recorded>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Keeps a failed run of `function` (the oldest beyond [`KEEP`] goes).
pub fn record(function: &str, error: Recorded) {
    if REPORTING.load(Ordering::Relaxed)
        && let Ok(mut queue) = PENDING.lock()
    {
        queue.push_back(Reported {
            id: uuid::Uuid::new_v4().simple().to_string(),
            function: function.to_owned(),
            error: error.clone(),
        });
        while queue.len() > PENDING_MAX {
            queue.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
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
                    node: None,
                },
            );
        }
        let kept = last("fn_test_a");
        assert_eq!(kept.len(), KEEP);
        assert_eq!(kept[0].message_id.as_deref(), Some("m-54"), "newest first");
        assert!(last("fn_test_b").is_empty());
    }
}
