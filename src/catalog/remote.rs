//! A gateway without a control plane of its own: the catalog long-polled from one
//! (`GET /internal/v1/catalog?after=<revision>` with a node token).
//!
//! Each request reports the revision this gateway has applied and waits (up to 25 s) for
//! a newer one. While the control plane is unreachable the gateway keeps serving what it
//! has (and, across restarts, the last-known-good copy on disk), retrying with back-off.

use std::time::Duration;

use serde::Deserialize;

use super::{CatalogSource, Document, LoadError};
use crate::config::Secret;

/// The request timeout: the server's longest wait plus slack.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest pause between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The control plane as seen from a remote gateway.
pub struct RemoteSource {
    client: reqwest::Client,
    url: String,
    token: Secret,
    name: String,
    revision: u64,
    pending: Option<(u64, Document)>,
    backoff: Duration,
    last_error: Option<String>,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource")
            .field("url", &self.url)
            .field("name", &self.name)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope {
    data: Answer,
}

#[derive(Deserialize)]
struct Answer {
    revision: u64,
    catalog: Document,
}

impl RemoteSource {
    /// The node credential it polls with.
    pub fn credential(&self) -> &Secret {
        &self.token
    }

    /// Polls `control_url` (the control plane's base URL) as gateway `name`.
    pub fn new(control_url: &str, token: Secret, name: &str) -> Self {
        let client = crate::tls::node_client(REQUEST_TIMEOUT);
        Self {
            client,
            url: control_url.trim_end_matches('/').to_owned(),
            token,
            name: name.to_owned(),
            revision: 0,
            pending: None,
            backoff: Duration::from_secs(1),
            last_error: None,
        }
    }

    /// The revision last applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// One request: `Some` with a newer catalog, `None` when nothing changed.
    async fn fetch(&self, after: u64, wait: u64) -> Result<Option<(u64, Document)>, String> {
        let response = self
            .client
            .get(format!(
                "{}/internal/v1/catalog?after={after}&wait={wait}&gateway={}",
                self.url,
                percent(&self.name)
            ))
            .bearer_auth(self.token.expose())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot reach the control plane at {}: {e}", self.url))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the catalog: {e}"))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "control plane answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        let envelope: Envelope = serde_json::from_slice(&body)
            .map_err(|e| format!("catalog answer is not understood: {e}"))?;
        Ok(Some((envelope.data.revision, envelope.data.catalog)))
    }

    fn failed(&mut self, error: String) {
        super::reload::feed_up(false);
        if self.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(%error, retry_in = ?self.backoff, "catalog feed: keeping the current catalog");
            self.last_error = Some(error);
        }
    }
}

impl CatalogSource for RemoteSource {
    fn describe(&self) -> String {
        format!("control plane {} (as gateway {})", self.url, self.name)
    }

    async fn load(&mut self) -> Result<Document, LoadError> {
        let (revision, doc) = match self.pending.take() {
            Some(pending) => pending,
            None => match self.fetch(0, 0).await {
                Ok(Some(found)) => found,
                Ok(None) => (0, Document::default()),
                Err(error) => {
                    return Err(LoadError::Io {
                        what: self.describe(),
                        source: std::io::Error::other(error),
                    });
                }
            },
        };
        self.revision = revision;
        Ok(doc)
    }

    fn version(&self) -> Option<u64> {
        (self.revision > 0).then_some(self.revision)
    }

    async fn changed(&mut self) {
        loop {
            match self.fetch(self.revision, 25).await {
                Ok(Some(found)) => {
                    self.pending = Some(found);
                    self.backoff = Duration::from_secs(1);
                    super::reload::feed_up(true);
                    if self.last_error.take().is_some() {
                        tracing::info!(url = %self.url, "catalog feed: control plane reachable again");
                    }
                    return;
                }
                Ok(None) => {
                    super::reload::feed_up(true);
                    if self.last_error.take().is_some() {
                        tracing::info!(url = %self.url, "catalog feed: control plane reachable again");
                    }
                }
                Err(error) => {
                    self.failed(error);
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Percent-encodes a query value (unreserved characters kept).
pub fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
