//! A destination's reading of the JetStream log: fetches from its durable pull consumer
//! (explicit acks). Any number of delivery processes fetch from the same consumer and
//! JetStream hands each event to one of them; an event settled as done is
//! acknowledged, one given back is negatively acknowledged with its delay, and one that
//! is never settled (its process died) is handed out again after the consumer's ack
//! wait: at least once.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::{Handed, Reading, Settle};

/// How long one fetch waits for events.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How long a failed fetch waits before the next one.
const FETCH_RETRY: Duration = Duration::from_secs(1);

/// One destination's reading of its JetStream consumer.
pub struct Stream {
    id: String,
    consumer: PullConsumer,
    /// Ends what runs beside the reading (its lag gauges) when the reading goes.
    _beside: Aborted,
}

/// Aborts its task when dropped.
struct Aborted(Option<tokio::task::AbortHandle>);

impl Drop for Aborted {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Stream {
    /// A reading of destination `id` from `consumer`; `beside` (its lag gauges, say) is
    /// aborted when the reading goes.
    pub fn new(id: &str, consumer: PullConsumer, beside: Option<tokio::task::AbortHandle>) -> Self {
        Self {
            id: id.to_owned(),
            consumer,
            _beside: Aborted(beside),
        }
    }

    /// One fetch: what arrived before it ended; an error only when nothing did.
    async fn fetch(&self, most: usize, stop: &CancellationToken) -> Result<Vec<Message>, String> {
        let mut messages = self
            .consumer
            .fetch()
            .max_messages(most.max(1))
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let mut received = Vec::new();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => None,
                next = messages.next() => next,
            };
            match next {
                None => break,
                Some(Ok(message)) => received.push(message),
                Some(Err(error)) if received.is_empty() => return Err(error.to_string()),
                Some(Err(_)) => break,
            }
        }
        Ok(received)
    }
}

impl Reading for Stream {
    type Ticket = Message;

    async fn next(&mut self, most: usize, stop: &CancellationToken) -> Vec<Handed<Message>> {
        loop {
            if stop.is_cancelled() {
                return Vec::new();
            }
            let received = match self.fetch(most, stop).await {
                Ok(received) => received,
                Err(error) => {
                    // A fetch that fails at once (no consumer leader during an election,
                    // say) is tried again after a pause, not in a loop that starves the
                    // servers.
                    tracing::warn!(destination = %self.id, %error, "fetch from JetStream failed; retrying");
                    if super::stopped_while(stop, FETCH_RETRY).await {
                        return Vec::new();
                    }
                    continue;
                }
            };
            if stop.is_cancelled() {
                // Not sent: whichever process fetches next gets them at once.
                for message in &received {
                    ack(message, AckKind::Nak(None)).await;
                }
                return Vec::new();
            }
            if received.is_empty() {
                continue;
            }
            return received
                .into_iter()
                .map(|message| {
                    let (attempts, position) = message.info().map_or((1, 0), |i| {
                        (
                            u32::try_from(i.delivered).unwrap_or(u32::MAX),
                            i.stream_sequence,
                        )
                    });
                    Handed {
                        position,
                        payload: message.payload.clone(),
                        attempts,
                        ticket: message,
                    }
                })
                .collect();
        }
    }

    async fn settle(&mut self, handed: Vec<Handed<Message>>, how: Settle) {
        let kind = match how {
            Settle::Done => AckKind::Ack,
            Settle::Retry(delay) if delay.is_zero() => AckKind::Nak(None),
            Settle::Retry(delay) => AckKind::Nak(Some(delay)),
        };
        for h in &handed {
            ack(&h.ticket, kind).await;
        }
    }

    fn read_size(&self, sendable: usize) -> usize {
        // Everything fetched must settle well within the consumer's ack wait, or another
        // process gets it too.
        sendable
    }

    fn backlog_bytes(&self, _position: u64) -> Option<u64> {
        None
    }

    fn waiting_since(&self, _at: Option<DateTime<Utc>>) {}

    async fn close(self) {}
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // The event will be handed out again after the ack wait: at least once.
        tracing::warn!(%error, "acknowledging to JetStream failed; the event will be redelivered");
    }
}
