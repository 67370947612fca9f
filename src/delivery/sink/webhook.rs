//! `webhook`: POST JSON to a URL: one event as is, or `{"batch":[…]}`.
//!
//! Signature: with a `secret`, every request carries
//! `X-Signature: sha256=<lower-case hex HMAC-SHA256(secret, raw request body)>`.
//! A receiver recomputes the HMAC over the exact bytes it received and compares in
//! constant time.
//!
//! SSRF guard: unless `delivery.allow_private_destinations` is set, a URL whose host
//! is, or resolves to, a loopback, private, link-local, CGNAT, multicast or
//! unspecified address is refused (permanently: the event goes to the dead-letter
//! store). The check runs at every send and inside the HTTP client's resolver, so a
//! name that changes its answer is caught too; redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::{Blame, Network, Outgoing, SendError, Sending, Sink};
use crate::catalog::WebhookDoc;
use crate::catalog::reach::PublicOnly;
pub use crate::catalog::reach::is_private;

/// Header carrying the body's HMAC.
pub const X_SIGNATURE: &str = "x-signature";

/// Posts events to a URL.
pub struct WebhookSink {
    settings: WebhookDoc,
    client: reqwest::Client,
    headers: HeaderMap,
    network: Network,
}

impl WebhookSink {
    /// A sink for these settings.
    pub fn new(settings: &WebhookDoc, network: Network) -> Result<Self, SendError> {
        let bad = |detail: String| SendError::Permanent {
            blame: Blame::Settings,
            reason: "invalid_settings",
            detail,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| bad(format!("header {k}: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| bad(format!("header {k}: {e}")))?;
            headers.insert(name, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(5_000)))
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY would send the request through a host the address guard never
            // sees: webhooks always connect directly.
            .no_proxy()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if !network.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| bad(format!("http client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            client,
            headers,
            network,
        })
    }

    fn body(&self, batch: &[Outgoing]) -> Vec<u8> {
        if self.settings.batch_size == 1 && batch.len() == 1 {
            return batch[0].event.get().as_bytes().to_vec();
        }
        let mut body =
            Vec::with_capacity(batch.iter().map(|o| o.event.get().len() + 1).sum::<usize>() + 16);
        body.extend_from_slice(b"{\"batch\":[");
        for (i, o) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(o.event.get().as_bytes());
        }
        body.extend_from_slice(b"]}");
        body
    }

    async fn post(&self, batch: &[Outgoing]) -> Result<(), SendError> {
        if !self.network.allow_private {
            guard(&self.settings.url).await?;
        }
        let body = self.body(batch);
        let mut request = self
            .client
            .post(&self.settings.url)
            .headers(self.headers.clone());
        if let Some(secret) = &self.settings.secret {
            request = request.header(X_SIGNATURE, signature(secret.as_bytes(), &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                blame: Blame::Destination,
                reason: if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                },
                retry_after: None,
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match status.as_u16() {
            200..=299 => Ok(()),
            408 => Err(SendError::Retryable {
                blame: Blame::Destination,
                reason: "status_408",
                retry_after,
            }),
            429 => Err(SendError::Retryable {
                blame: Blame::Destination,
                reason: "rate_limited",
                retry_after,
            }),
            500..=599 => Err(SendError::Retryable {
                blame: Blame::Destination,
                reason: "status_5xx",
                retry_after,
            }),
            code => Err(SendError::Permanent {
                // A redirect (never followed), missing or refused credentials, or a
                // wrong URL are the settings' doing; other refusals are of the events.
                blame: match code {
                    300..=399 | 401 | 403 | 404 | 405 | 410 => Blame::Settings,
                    _ => Blame::Events,
                },
                reason: "status_4xx",
                detail: format!(
                    "HTTP {code} from {}",
                    crate::catalog::redacted_url(&self.settings.url)
                ),
            }),
        }
    }
}

impl WebhookSink {
    /// The `X-Signature` value for `body` signed with `secret` (for receivers and tests).
    pub fn signature_of(secret: &[u8], body: &[u8]) -> String {
        signature(secret, body)
    }
}

impl Sink for WebhookSink {
    fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
        Box::pin(self.post(batch))
    }

    fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    fn batch_bytes(&self) -> usize {
        self.settings.batch_bytes
    }

    fn batch_wait(&self) -> Duration {
        if self.settings.batch_size > 1 {
            Duration::from_millis(self.settings.batch_ms)
        } else {
            Duration::ZERO
        }
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", hex::encode(digest))
}

/// Refuses a URL whose host is or resolves to a private address.
async fn guard(url: &str) -> Result<(), SendError> {
    let refused = |detail: String| SendError::Permanent {
        blame: Blame::Settings,
        reason: "private_address",
        detail,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| SendError::Permanent {
        blame: Blame::Settings,
        reason: "invalid_settings",
        detail: format!("url: {e}"),
    })?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_private(ip) {
            Err(refused(format!(
                "{host} is a private address (set delivery.allow_private_destinations to allow)"
            )))
        } else {
            Ok(())
        };
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| SendError::Retryable {
            blame: Blame::Network,
            reason: "dns",
            retry_after: None,
        })?;
    let addrs: Vec<SocketAddr> = addrs.collect();
    if addrs.iter().any(|a| is_private(a.ip())) {
        return Err(refused(format!(
            "{host} resolves to a private address (set delivery.allow_private_destinations to allow)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "192.0.0.192",
            "192.88.99.1",
            "198.18.0.1",
            "240.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "2a00:1450::1",
        ] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn guard_refuses_private_hosts() {
        assert!(matches!(
            guard("http://127.0.0.1:9/x").await,
            Err(SendError::Permanent {
                blame: Blame::Settings,
                reason: "private_address",
                ..
            })
        ));
        assert!(matches!(
            guard("http://[::1]:9/x").await,
            Err(SendError::Permanent {
                blame: Blame::Settings,
                reason: "private_address",
                ..
            })
        ));
        assert!(matches!(
            guard("http://localhost:9/x").await,
            Err(SendError::Permanent {
                blame: Blame::Settings,
                reason: "private_address",
                ..
            })
        ));
        assert!(guard("http://8.8.8.8/x").await.is_ok());
    }
}
