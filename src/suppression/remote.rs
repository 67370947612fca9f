//! The suppression list of a remote control plane: `GET /internal/v1/suppressions` (a
//! long poll), with the node's credential.

use std::time::Duration;

use serde::Deserialize;

use super::{Feed, FeedError, Page};
use crate::config::Secret;

/// How long the control plane holds a request with nothing new.
const WAIT: Duration = Duration::from_secs(20);
/// Longest a request may take in all.
const TIMEOUT: Duration = Duration::from_secs(35);

/// A control plane in another process.
pub struct RemoteFeed {
    client: reqwest::Client,
    url: String,
    token: Secret,
}

#[derive(Deserialize)]
struct Envelope {
    data: Page,
}

impl RemoteFeed {
    /// Follows the list of the control plane at `control_url` (its base URL).
    pub fn new(control_url: &str, token: Secret) -> Self {
        let client = crate::tls::node_client(TIMEOUT);
        Self {
            client,
            url: control_url.trim_end_matches('/').to_owned(),
            token,
        }
    }
}

impl Feed for RemoteFeed {
    async fn changes(&mut self, after: u64, wait: bool) -> Result<Page, FeedError> {
        let wait = if wait { WAIT.as_secs() } else { 0 };
        let response = self
            .client
            .get(format!(
                "{}/internal/v1/suppressions?after={after}&wait={wait}",
                self.url
            ))
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FeedError::Unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| FeedError::Unreachable(e.to_string()))?;
        if !status.is_success() {
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            return Err(FeedError::Refused(format!("{status}: {text}")));
        }
        serde_json::from_slice::<Envelope>(&body)
            .map(|e| e.data)
            .map_err(|e| FeedError::Refused(format!("answer not understood: {e}")))
    }

    fn describe(&self) -> String {
        format!("control plane {}", self.url)
    }
}
