//! A node that follows a remote control plane sends the failed runs of its functions
//! there (`POST /internal/v1/function-errors`, with its node credential), so `GET
//! /api/v1/functions/{id}/errors` shows every node's, not only the control plane's own.
//!
//! Every [`INTERVAL`] the runs queued since ([`super::errors::pending`]) go in one
//! report; a report that fails is queued again (at most
//! [`super::errors::PENDING_MAX`] runs wait) and the failure is logged once until a
//! report goes through again. A stopping node sends what is queued once more.

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
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
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

    /// Sends `runs`; why not, when the control plane did not take them.
    async fn send(&self, runs: &[Reported]) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(self.token.expose())
            .header("content-type", "application/json")
            .body(serde_json::json!({ "errors": runs }).to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(format!(
            "{status}: {}",
            body.chars().take(300).collect::<String>()
        ))
    }

    /// Sends what is queued every [`INTERVAL`] until `stop`, then once more.
    pub async fn run(self, stop: CancellationToken) {
        errors::report_from_now();
        let mut failing = false;
        loop {
            let last = tokio::select! {
                () = tokio::time::sleep(INTERVAL) => false,
                () = stop.cancelled() => true,
            };
            let runs = errors::pending();
            if !runs.is_empty() {
                match self.send(&runs).await {
                    Ok(()) if failing => {
                        tracing::info!(url = %self.url, "functions: failed runs are reported again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(why) => {
                        if !failing {
                            tracing::warn!(error = %why, url = %self.url, "functions: failed runs not reported; keeping them to resend");
                            failing = true;
                        }
                        errors::requeue(runs);
                    }
                }
            }
            if last {
                return;
            }
        }
    }
}
