//! The published catalog: one [`Publisher`] per process exports the store's catalog once
//! per catalog revision and puts it on a `watch`; the in-process [`Feed`] (the gateway's
//! [`CatalogSource`]) and the remote gateways' long polls read that, never the store.
//!
//! The store's catalog-revision channel wakes the publisher: at once for this process's
//! commits and (on PostgreSQL) other processes' notified ones, within the store's poll
//! interval for the rest (see [`super::store::follow`]). Changes that touch no catalog
//! table do not move that revision, so they cost no export. Only write-key digests are in
//! what it hands over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::store::{Store, StoreError, catalog, workspaces};
use crate::catalog::{CatalogSource, Document, LoadError};

/// How long the publisher waits before trying again after a failed export.
const RETRY: Duration = Duration::from_secs(1);

/// One exported catalog and the catalog revision it is exactly the state of.
#[derive(Debug)]
pub struct Published {
    /// The catalog revision.
    pub revision: u64,
    /// The catalog, write keys as digests only.
    pub doc: Document,
}

/// The latest published catalog of a store; clones share one export task.
#[derive(Debug, Clone)]
pub struct Publisher {
    store: Store,
    latest: watch::Receiver<Option<Arc<Published>>>,
}

impl Publisher {
    /// Starts exporting `store`'s catalog whenever its catalog revision moves; the task
    /// ends when every `Publisher` clone is gone.
    pub fn spawn(store: Store) -> Self {
        let (tx, latest) = watch::channel(None);
        tokio::spawn(publish(store.clone(), tx));
        Self { store, latest }
    }

    /// A receiver of every publication.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.latest.clone()
    }

    /// The newest publication, if one has been made.
    pub fn latest(&self) -> Option<Arc<Published>> {
        self.latest.borrow().clone()
    }

    /// The store it publishes.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

async fn publish(store: Store, tx: watch::Sender<Option<Arc<Published>>>) {
    let mut wake = store.watch_catalog();
    let mut failing = false;
    loop {
        let announced = *wake.borrow_and_update();
        let stale = tx.borrow().as_ref().is_none_or(|p| p.revision < announced);
        if stale {
            let started = std::time::Instant::now();
            match export_all(&store).await {
                Ok((revision, doc)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(revision, "catalog export works again");
                    }
                    tracing::debug!(revision, took = ?started.elapsed(), sources = doc.sources.len(), "catalog published");
                    let newer = tx.borrow().as_ref().is_none_or(|p| p.revision < revision);
                    if newer {
                        tx.send_replace(Some(Arc::new(Published { revision, doc })));
                    }
                }
                Err(error) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%error, "catalog export failed; gateways keep the last published catalog, retrying");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = tx.closed() => return,
                    }
                    continue;
                }
            }
            // The export read a revision at least as new as the announced one; look again
            // in case it moved meanwhile.
            continue;
        }
        tokio::select! {
            changed = wake.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}

/// Feeds the gateway from a [`Publisher`].
#[derive(Debug)]
pub struct Feed {
    publisher: Publisher,
    wake: watch::Receiver<Option<Arc<Published>>>,
    seen: Option<u64>,
}

impl Feed {
    /// The store behind the published catalog.
    pub fn store(&self) -> &Store {
        self.publisher.store()
    }

    /// A feed of `publisher`'s catalogs.
    pub fn new(publisher: Publisher) -> Self {
        Self {
            wake: publisher.subscribe(),
            publisher,
            seen: None,
        }
    }
}

/// Every workspace's catalog, as one document (source and destination ids are global),
/// and the catalog revision it is exactly the state of (read in one consistent
/// transaction).
pub async fn export_all(store: &Store) -> Result<(u64, Document), StoreError> {
    let (revision, mut tx) = store.consistent_read().await?;
    let mut doc = Document::default();
    for ws in workspaces::all_ids(&mut tx).await? {
        // Every part named: a part added to the document cannot be left out here.
        let Document {
            sources,
            destinations,
            tracking_plans,
            quotas,
            source_functions,
        } = catalog::export(&mut tx, store.key(), &ws).await?;
        doc.sources.extend(sources);
        doc.destinations.extend(destinations);
        doc.tracking_plans.extend(tracking_plans);
        doc.quotas.extend(quotas);
        doc.source_functions.extend(source_functions);
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
        format!("control plane ({:?})", self.publisher.store().backend())
    }

    async fn load(&mut self) -> Result<Document, LoadError> {
        let published = self.wake.borrow_and_update().clone();
        let (revision, doc) = match published {
            Some(p) if self.seen.is_none_or(|seen| p.revision > seen) => {
                (p.revision, p.doc.clone())
            }
            // Nothing newer published yet (the first load at start): export directly, so a
            // start never waits on the publisher's first round.
            _ => export_all(self.publisher.store()).await.map_err(io)?,
        };
        self.seen = Some(revision);
        Ok(doc)
    }

    fn version(&self) -> Option<u64> {
        self.seen
    }

    async fn changed(&mut self) {
        loop {
            let newer = self
                .wake
                .borrow_and_update()
                .as_ref()
                .is_some_and(|p| self.seen.is_none_or(|seen| p.revision > seen));
            if newer {
                return;
            }
            if self.wake.changed().await.is_err() {
                // The publisher is gone: nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
    }
}
