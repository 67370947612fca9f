//! The ledger of a remote gateway: `POST /internal/v1/usage` on its control plane, with
//! its node credential.

use serde::Deserialize;

use super::{Ledger, LedgerError, Report, Standing, TIMEOUT};
use crate::config::Secret;

/// A control plane in another process.
pub struct RemoteLedger {
    client: reqwest::Client,
    url: String,
    token: Secret,
    name: String,
}

#[derive(Deserialize)]
struct Envelope {
    data: Standing,
}

impl RemoteLedger {
    /// Reports to `control_url` (the control plane's base URL) as gateway `name`.
    pub fn new(control_url: &str, token: Secret, name: &str) -> Self {
        let client = crate::tls::node_client(TIMEOUT);
        Self {
            client,
            url: control_url.trim_end_matches('/').to_owned(),
            token,
            name: name.to_owned(),
        }
    }
}

impl Ledger for RemoteLedger {
    async fn exchange(&mut self, report: &Report) -> Result<Standing, LedgerError> {
        let response = self
            .client
            .post(format!(
                "{}/internal/v1/usage?gateway={}",
                self.url,
                crate::catalog::percent(&self.name)
            ))
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(report).unwrap_or_default())
            .send()
            .await
            .map_err(|e| LedgerError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| LedgerError::Unreachable(e.to_string()))?;
        let text = || {
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        };
        // Only a report the control plane read and will never book is dropped; any other
        // failure (a revoked credential, a proxy in the way, an answer not understood)
        // keeps it, and its events keep counting towards quotas here, until it is booked.
        let bad_report = [
            reqwest::StatusCode::BAD_REQUEST,
            reqwest::StatusCode::PAYLOAD_TOO_LARGE,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        ];
        if bad_report.contains(&status) {
            return Err(LedgerError::Refused(format!("{status}: {}", text())));
        }
        if !status.is_success() {
            return Err(LedgerError::Unreachable(format!("{status}: {}", text())));
        }
        serde_json::from_slice::<Envelope>(&body)
            .map(|e| e.data)
            .map_err(|e| LedgerError::Unreachable(format!("answer not understood: {e}")))
    }

    fn describe(&self) -> String {
        format!("control plane {} (as gateway {})", self.url, self.name)
    }
}
