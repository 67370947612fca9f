//! The control plane as the gateway's [`CatalogSource`]: the store's catalog, exported
//! whenever its revision moves.
//!
//! The store's revision channel wakes the feed: at once for this process's commits and
//! (on PostgreSQL) other processes' notified ones, within the store's poll interval for
//! the rest (see [`super::store::follow`]). Only write-key digests are in what it hands
//! over.

use tokio::sync::watch;

use super::store::{Store, StoreError, catalog, workspaces};
use crate::catalog::{CatalogSource, Document, LoadError};

/// Feeds the gateway from a store.
#[derive(Debug)]
pub struct Feed {
    store: Store,
    wake: watch::Receiver<u64>,
    seen: Option<u64>,
}

impl Feed {
    /// A feed from `store`.
    pub fn new(store: Store) -> Self {
        Self {
            wake: store.watch_revision(),
            store,
            seen: None,
        }
    }
}

/// Every workspace's catalog, as one document (source and destination ids are global),
/// and the revision it is exactly the state of (read in one consistent transaction).
pub async fn export_all(store: &Store) -> Result<(u64, Document), StoreError> {
    let (revision, mut tx) = store.consistent_read().await?;
    let mut doc = Document::default();
    for ws in workspaces::all_ids(&mut tx).await? {
        let one = catalog::export(&mut tx, store.key(), &ws).await?;
        doc.sources.extend(one.sources);
        doc.destinations.extend(one.destinations);
        doc.tracking_plans.extend(one.tracking_plans);
    }
    tx.rollback().await?;
    Ok((revision, doc))
}

fn io(error: StoreError) -> LoadError {
    LoadError::Io {
        what: "the control-plane store".into(),
        source: std::io::Error::other(error.to_string()),
    }
}

impl CatalogSource for Feed {
    fn describe(&self) -> String {
        format!("control plane ({:?})", self.store.backend())
    }

    async fn load(&mut self) -> Result<Document, LoadError> {
        let started = std::time::Instant::now();
        let (revision, doc) = export_all(&self.store).await.map_err(io)?;
        tracing::debug!(revision, took = ?started.elapsed(), sources = doc.sources.len(), "catalog exported");
        self.seen = Some(revision);
        self.wake.mark_unchanged();
        Ok(doc)
    }

    fn version(&self) -> Option<u64> {
        self.seen
    }

    async fn changed(&mut self) {
        loop {
            let announced = *self.wake.borrow_and_update();
            if self.seen.is_none_or(|seen| announced > seen) {
                return;
            }
            if self.wake.changed().await.is_err() {
                // The store is gone: nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
    }
}
