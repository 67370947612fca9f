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
    /// One lock per destination: an append never interleaves with a replay's read or
    /// rewrite (the sends in between run without it, so workers keep appending).
    locks: Arc<DashMap<String, Arc<Mutex<()>>>>,
    /// One replay at a time per destination.
    replays: Arc<DashMap<String, Arc<Mutex<()>>>>,
    /// The sender of each running destination, which a replay sends through.
    senders: Arc<DashMap<String, Arc<dyn Sink>>>,
}

impl Store {
    /// The store in `dir` (created on the first append).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            locks: Arc::new(DashMap::new()),
            replays: Arc::new(DashMap::new()),
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
        let lock = lock(&self.locks, id);
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

    /// Sends a destination's dead letters again; those that fail again stay, and what
    /// its worker adds meanwhile is kept after them (a replay against a destination
    /// still down may take long: the worker is never held up by it).
    pub async fn replay(&self, id: &str) -> Result<Replayed, ReplayError> {
        let sink = self
            .senders
            .get(id)
            .map(|s| Arc::clone(s.value()))
            .ok_or_else(|| ReplayError::UnknownDestination(id.to_owned()))?;
        let replaying = lock(&self.replays, id);
        let _one = replaying.lock().await;
        let file = lock(&self.locks, id);
        let (contents, read) = {
            let _guard = file.lock().await;
            super::read_whole(&self.dir, id)?
        };
        let (mut result, kept) = super::resend(contents.entries, sink.as_ref()).await;
        result.unreadable = contents.unreadable.len();
        {
            let _guard = file.lock().await;
            super::rewrite(&self.dir, id, (&kept, &contents.unreadable), read)?;
        }
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
}

/// The lock of `id` in `locks`.
fn lock(locks: &DashMap<String, Arc<Mutex<()>>>, id: &str) -> Arc<Mutex<()>> {
    Arc::clone(locks.entry(id.to_owned()).or_default().value())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::value::RawValue;

    use super::*;
    use crate::delivery::sink::{Blame, Outgoing, SendError, Sending};

    fn entry(offset: u64) -> Entry {
        Entry {
            failed_at: "2026-01-01T00:00:00.000Z".into(),
            error: "status 503".into(),
            reason: "status_5xx".into(),
            blame: Some(Blame::Destination),
            attempts: 1,
            offset,
            source_id: "web".into(),
            event: RawValue::from_string("{}".to_owned()).expect("json"),
        }
    }

    /// A destination whose worker dead-letters an event while a replay sends: it takes
    /// the replayed events, and during the first send the worker appends entry 9.
    struct Busy {
        store: Store,
        sent: std::sync::Mutex<Vec<u64>>,
    }

    impl Sink for Busy {
        fn send<'a>(&'a self, batch: &'a [Outgoing]) -> Sending<'a> {
            Box::pin(async move {
                let first = {
                    let mut sent = self.sent.lock().expect("lock");
                    sent.extend(batch.iter().map(|o| o.offset));
                    sent.len() == 1
                };
                if first {
                    self.store
                        .add("d", &[entry(9)], u64::MAX, &Faults::default())
                        .await
                        .map_err(|e| SendError::Permanent {
                            reason: "append",
                            blame: Blame::Sluice,
                            detail: e.to_string(),
                        })?;
                }
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_worker_appends_while_a_replay_sends_and_its_entry_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path().to_path_buf());
        let faults = Faults::default();
        store
            .add("d", &[entry(1), entry(2)], u64::MAX, &faults)
            .await
            .expect("add");
        let sink = Arc::new(Busy {
            store: store.clone(),
            sent: std::sync::Mutex::new(Vec::new()),
        });
        store.running("d", Arc::clone(&sink) as Arc<dyn Sink>);
        // Holding the destination's lock through the sends would deadlock here.
        let replayed = tokio::time::timeout(Duration::from_secs(10), store.replay("d"))
            .await
            .expect("the append did not wait for the replay")
            .expect("replay");
        assert_eq!(replayed.delivered, 2);
        assert_eq!(*sink.sent.lock().expect("lock"), [1, 2]);
        let left = super::super::read(dir.path(), "d").expect("read");
        let offsets: Vec<u64> = left.entries.iter().map(|e| e.offset).collect();
        assert_eq!(
            offsets,
            [9],
            "the entry added meanwhile stays; the replayed ones go"
        );

        store.stopped("d");
        assert!(matches!(
            store.replay("d").await,
            Err(ReplayError::UnknownDestination(_))
        ));
    }
}
