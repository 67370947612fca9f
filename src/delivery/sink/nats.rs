//! `nats`: publish each event to a NATS subject. With `jetstream = true` (default)
//! every publish waits for the stream's ack, and carries `Nats-Msg-Id: <messageId>` so
//! JetStream's duplicate window drops a re-delivery after a crash.
//!
//! The subject may contain `{source}` and `{type}`, replaced per event (characters
//! that are not allowed in a subject token become `_`).

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{Blame, Outgoing, SendError, Sending, Sink};
use crate::catalog::NatsDoc;

/// JetStream's message de-duplication header.
const MSG_ID: &str = "Nats-Msg-Id";

/// Publishes events to NATS.
pub struct NatsSink {
    settings: NatsDoc,
    client: OnceCell<async_nats::Client>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", default)]
    kind: &'a str,
    #[serde(rename = "messageId", default)]
    message_id: &'a str,
}

impl NatsSink {
    /// A sink for these settings (connects on first use).
    pub fn new(settings: &NatsDoc) -> Self {
        Self {
            settings: settings.clone(),
            client: OnceCell::new(),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.settings.timeout_ms)
    }

    async fn client(&self) -> Result<&async_nats::Client, SendError> {
        self.client
            .get_or_try_init(|| async {
                async_nats::ConnectOptions::new()
                    .connection_timeout(self.timeout())
                    .connect(self.settings.url.as_str())
                    .await
            })
            .await
            .map_err(|_| SendError::Retryable {
                blame: Blame::Destination,
                reason: "connection",
                retry_after: None,
            })
    }

    /// The subject for one event.
    pub fn subject(&self, source_id: &str, kind: &str) -> String {
        let token = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        self.settings
            .subject
            .replace("{source}", &token(source_id))
            .replace("{type}", &token(kind))
    }

    async fn publish(&self, batch: &[Outgoing]) -> Result<(), SendError> {
        let client = self.client().await?;
        let timeout = |_| SendError::Retryable {
            blame: Blame::Destination,
            reason: "timeout",
            retry_after: None,
        };
        if !self.settings.jetstream {
            for o in batch {
                let fields: Fields<'_> = serde_json::from_str(o.event.get()).unwrap_or(Fields {
                    kind: "",
                    message_id: "",
                });
                let payload = Bytes::copy_from_slice(o.event.get().as_bytes());
                client
                    .publish(self.subject(&o.source_id, fields.kind), payload)
                    .await
                    .map_err(|_| SendError::Retryable {
                        blame: Blame::Destination,
                        reason: "connection",
                        retry_after: None,
                    })?;
            }
            return tokio::time::timeout(self.timeout(), client.flush())
                .await
                .map_err(timeout)?
                .map_err(|_| SendError::Retryable {
                    blame: Blame::Destination,
                    reason: "connection",
                    retry_after: None,
                });
        }
        let jetstream = async_nats::jetstream::new(client.clone());
        let mut acks = Vec::with_capacity(batch.len());
        for o in batch {
            let fields: Fields<'_> = serde_json::from_str(o.event.get()).unwrap_or(Fields {
                kind: "",
                message_id: "",
            });
            let mut headers = async_nats::HeaderMap::new();
            if !fields.message_id.is_empty() {
                headers.insert(MSG_ID, fields.message_id);
            }
            let payload = Bytes::copy_from_slice(o.event.get().as_bytes());
            let ack = jetstream
                .publish_with_headers(self.subject(&o.source_id, fields.kind), headers, payload)
                .await
                .map_err(|e| classify(e.kind()))?;
            acks.push(ack);
        }
        for ack in acks {
            tokio::time::timeout(self.timeout(), ack)
                .await
                .map_err(timeout)?
                .map_err(|e| classify(e.kind()))?;
        }
        Ok(())
    }
}

fn classify(kind: PublishErrorKind) -> SendError {
    match kind {
        PublishErrorKind::StreamNotFound => SendError::Retryable {
            blame: Blame::Destination,
            reason: "no_stream",
            retry_after: None,
        },
        PublishErrorKind::TimedOut => SendError::Retryable {
            blame: Blame::Destination,
            reason: "timeout",
            retry_after: None,
        },
        PublishErrorKind::MaxPayloadExceeded => SendError::Permanent {
            blame: Blame::Events,
            reason: "too_large",
            detail: "the event exceeds the NATS server's max_payload".to_owned(),
        },
        _ => SendError::Retryable {
            blame: Blame::Destination,
            reason: "connection",
            retry_after: None,
        },
    }
}

impl Sink for NatsSink {
    fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
        Box::pin(self.publish(batch))
    }

    fn batch_size(&self) -> usize {
        256
    }
}
