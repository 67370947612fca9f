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
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
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
        // Overloaded or slow: worth sending again, unlike any other refusal.
        let again = [
            reqwest::StatusCode::REQUEST_TIMEOUT,
            reqwest::StatusCode::TOO_MANY_REQUESTS,
        ];
        if status.is_server_error() || again.contains(&status) {
            return Err(LedgerError::Unreachable(format!("answered {status}")));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(LedgerError::Refused(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        serde_json::from_slice::<Envelope>(&body)
            .map(|e| e.data)
            .map_err(|e| LedgerError::Refused(format!("answer not understood: {e}")))
    }

    fn describe(&self) -> String {
        format!("control plane {} (as gateway {})", self.url, self.name)
    }
}
