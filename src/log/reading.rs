//! Reading the event log for one destination, one interface over both backends: the
//! delivery worker asks for the next events, sends them, and settles each one (done, or
//! to be handed out again after a delay); it never knows which log it reads.
//!
//! - [`local::Local`] reads the local log from the destination's saved cursor, holds the
//!   log's segments it still needs, and hands its events out in order: while some wait
//!   for a retry, no newer ones are read (the cursor moves only past settled events).
//! - [`stream::Stream`] fetches from the destination's durable JetStream consumer:
//!   settling acknowledges, a retry is a negative acknowledgement with a delay, and
//!   whichever delivery process fetches next gets the event again.
//!
//! Lag: the local reading keeps a [`backlog::Backlog`] the scrape reads; the JetStream
//! reading keeps the gauges itself from its consumer's state.

pub mod backlog;
pub mod cursor;
pub mod local;
pub mod stream;

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// One event handed to a destination's delivery.
#[derive(Debug)]
pub struct Handed<T> {
    /// Where it is in the log: the record's offset, or the stream sequence.
    pub position: u64,
    /// The stored record.
    pub payload: Bytes,
    /// How many times it has been handed out, this time included (sent, or held while
    /// its destination's circuit was open).
    pub attempts: u32,
    /// What the backend needs to settle it.
    ticket: T,
}

/// What became of a handed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Delivered, filtered out, or in the dead-letter store: never handed out again.
    Done,
    /// Not sent (or failed): hand it out again after this delay.
    Retry(Duration),
}

/// Sleeps for `wait`; true if `stop` was cancelled first. What waits to try again (a
/// read, a cursor, a consumer) waits through this.
pub async fn stopped_while(stop: &CancellationToken, wait: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// A destination's way through the event log.
pub trait Reading: Send + Sync + 'static {
    /// What settles one handed event.
    type Ticket: Send + Sync + 'static;

    /// The next events (at most `most`), waiting until there are some; empty only once
    /// `stop` is cancelled. A read that fails is said and tried again here.
    fn next(
        &mut self,
        most: usize,
        stop: &CancellationToken,
    ) -> impl Future<Output = Vec<Handed<Self::Ticket>>> + Send;

    /// How many events to ask [`Reading::next`] for when a round can send `sendable`
    /// at once.
    fn read_size(&self, sendable: usize) -> usize;

    /// Settles handed events.
    fn settle(
        &mut self,
        handed: Vec<Handed<Self::Ticket>>,
        how: Settle,
    ) -> impl Future<Output = ()> + Send;

    /// The bytes the log keeps for this destination from `position` on, where the log
    /// bounds them (the local log, against `retry.max_lag_bytes`); `None` otherwise.
    fn backlog_bytes(&self, position: u64) -> Option<u64>;

    /// The oldest event now waiting for the destination was received at `at` (for the
    /// lag gauges, where the backend cannot tell by itself).
    fn waiting_since(&self, at: Option<DateTime<Utc>>);

    /// Ends the reading: what was not settled is kept for the next one (the cursor is
    /// saved where it stands; JetStream hands unsettled events out again).
    fn close(self) -> impl Future<Output = ()> + Send;
}
