//! The dead-letter store as one handle, the same for both delivery engines: their
//! workers add to it, the admin listener lists and replays it (`GET /dlq`,
//! `POST /dlq/<id>/replay`, `sluice dlq`), whether events come from the local log or
//! from JetStream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::Mutex;

use super::{Entry, Replayed, Summary};
use crate::delivery::sink::Sink;
use crate::disk::Faults;
use crate::telemetry;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No running destination has this id.
    #[error("no destination {0:?} is running")]
    UnknownDestination(String),
    /// The dead-letter file could not be read or rewritten.
    #[error("dead-letter store: {0}")]
    Io(#[from] std::io::Error),
}

/// A process's dead-letter store (`<log.dir>/dead-letters`), one file per destination.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    /// One lock per destination: an append never interleaves with a replay's rewrite.
    locks: Arc<DashMap<String, Arc<Mutex<()>>>>,
    /// The sender of each running destination, which a replay sends through.
    senders: Arc<DashMap<String, Arc<dyn Sink>>>,
}

impl Store {
    /// The store in `dir` (created on the first append).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            locks: Arc::new(DashMap::new()),
            senders: Arc::new(DashMap::new()),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A destination's worker runs with `sink`: replays send through it.
    pub(crate) fn running(&self, id: &str, sink: Arc<dyn Sink>) {
        self.senders.insert(id.to_owned(), sink);
    }

    /// A destination's worker stopped: its dead letters stay, but cannot be replayed
    /// until it runs again.
    pub(crate) fn stopped(&self, id: &str) {
        self.senders.remove(id);
    }

    /// Appends entries to a destination's file (see [`super::append`]), never while a
    /// replay rewrites it.
    pub async fn add(
        &self,
        id: &str,
        entries: &[Entry],
        max_bytes: u64,
        faults: &Faults,
    ) -> std::io::Result<()> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        super::append(&self.dir, id, entries, max_bytes, faults)
    }

    /// Dead letters per destination (and the unreadable-lines gauge, set as read).
    pub fn list(&self) -> std::io::Result<Vec<Summary>> {
        let list = super::list(&self.dir)?;
        for s in &list {
            telemetry::DELIVERY_DEAD_LETTERS_UNREADABLE
                .with([&s.destination])
                .set(s.unreadable as f64);
        }
        Ok(list)
    }

    /// Sends a destination's dead letters again; those that fail again stay.
    pub async fn replay(&self, id: &str) -> Result<Replayed, ReplayError> {
        let sink = self
            .senders
            .get(id)
            .map(|s| Arc::clone(s.value()))
            .ok_or_else(|| ReplayError::UnknownDestination(id.to_owned()))?;
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        let result = super::replay(&self.dir, id, sink.as_ref()).await?;
        tracing::info!(
            destination = id,
            delivered = result.delivered,
            failed = result.failed,
            unreadable = result.unreadable,
            "dead letters replayed"
        );
        if result.unreadable > 0 {
            tracing::error!(destination = id, unreadable = result.unreadable, file = %super::path(&self.dir, id).display(), "dead-letter lines cannot be read; they are kept in the file for an operator");
        }
        Ok(result)
    }

    fn lock(&self, id: &str) -> Arc<Mutex<()>> {
        Arc::clone(self.locks.entry(id.to_owned()).or_default().value())
    }
}
