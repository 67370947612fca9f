//! A node that follows a remote control plane sends the failed runs of its functions
//! there (`POST /internal/v1/function-errors`, with its node credential), so `GET
//! /api/v1/functions/{id}/errors` shows every node's, not only the control plane's own.
//!
//! Every [`INTERVAL`] the runs queued since ([`super::errors::pending`]) go in reports
//! of at most 100. A report the control plane did not answer is queued again (at most
//! [`super::errors::PENDING_MAX`] runs wait; each carries an id, so one stored before a
//! lost answer is not stored twice), and the failure is logged once until a report goes
//! through again; one it read and refused is dropped. A stopping node sends what is
//! queued once more.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::errors::{self, Reported};
use crate::config::Secret;

/// How often queued runs are sent.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for the control plane's answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where a node's failed runs go.
pub struct Reporter {
    client: reqwest::Client,
    url: String,
    token: Secret,
}

impl Reporter {
    /// Reports to `control_url` (the control plane's base URL) as node `name`.
    pub fn new(control_url: &str, token: Secret, name: &str) -> Self {
        let client = crate::tls::node_client(TIMEOUT);
        Self {
            client,
            url: format!(
                "{}/internal/v1/function-errors?node={}",
                control_url.trim_end_matches('/'),
                crate::catalog::percent(name)
            ),
            token,
        }
    }

    /// Sends `runs`: `Ok` when taken, `Err(Refused)` when the control plane read them
    /// and will never take them (resending cannot help), `Err(Failed)` otherwise.
    async fn send(&self, runs: &[Reported]) -> Result<(), Unsent> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .header("content-type", "application/json")
            .body(serde_json::json!({ "errors": runs }).to_string())
            .send()
            .await
            .map_err(|e| Unsent::Failed(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let why = format!("{status}");
        let refused = [
            reqwest::StatusCode::BAD_REQUEST,
            reqwest::StatusCode::PAYLOAD_TOO_LARGE,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        ];
        if refused.contains(&status) {
            Err(Unsent::Refused(why))
        } else {
            Err(Unsent::Failed(why))
        }
    }

    /// Sends the queued runs, [`CHUNK`] at a time; whether every one was sent or
    /// dropped (`false`: the rest are queued again).
    async fn flush(&self, failing: &mut bool) -> bool {
        let lost = errors::dropped();
        if lost > 0 {
            tracing::warn!(
                runs = lost,
                "functions: failed runs dropped, their queue was full"
            );
        }
        let mut runs = errors::pending();
        while !runs.is_empty() {
            let rest = runs.split_off(runs.len().min(CHUNK));
            match self.send(&runs).await {
                Ok(()) => {
                    if *failing {
                        tracing::info!(url = %self.url, "functions: failed runs are reported again");
                        *failing = false;
                    }
                }
                Err(Unsent::Refused(why)) => {
                    tracing::error!(error = %why, runs = runs.len(), url = %self.url, "functions: the control plane refused a report of failed runs; they are dropped");
                }
                Err(Unsent::Failed(why)) => {
                    if !*failing {
                        tracing::warn!(error = %why, url = %self.url, "functions: failed runs not reported; keeping them to resend");
                        *failing = true;
                    }
                    runs.extend(rest);
                    errors::requeue(runs);
                    return false;
                }
            }
            runs = rest;
        }
        true
    }

    /// Sends what is queued every [`INTERVAL`] until `stop`, then once more (for at
    /// most 2 s, and only while the control plane answers).
    pub async fn run(self, stop: CancellationToken) {
        errors::report_from_now();
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(INTERVAL) => {}
                () = stop.cancelled() => break,
            }
            // A report under way finishes (its runs are not lost): at most the client's
            // timeout.
            self.flush(&mut failing).await;
        }
        if !failing {
            let _ = tokio::time::timeout(LAST_CALL, self.flush(&mut failing)).await;
        }
    }
}

/// Why a report was not taken.
enum Unsent {
    /// Read and refused: dropped.
    Refused(String),
    /// Not read (unreachable, no answer, a credential refused): resent.
    Failed(String),
}

/// Runs one report carries at most (well under the control listener's 1 MiB body
/// limit with every message at its 1000 bytes).
const CHUNK: usize = 100;

/// How long a stopping node waits for its last report.
const LAST_CALL: Duration = Duration::from_secs(2);
