//! Feeding the [`Live`] from a [`CatalogSource`], with a last-known-good copy on disk.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::document::{Invalid, Problems};
use super::{Document, Live, Snapshot};
use crate::telemetry;

/// Where catalog documents come from: a file today, the control plane later.
///
/// `load` returns the whole current document; `changed` resolves when it may have
/// changed (spurious wake-ups are fine: an unchanged document is not reinstalled).
pub trait CatalogSource: Send + 'static {
    /// Human description for logs (never contains secrets).
    fn describe(&self) -> String;
    /// Reads the current document.
    fn load(&mut self) -> impl Future<Output = Result<Document, LoadError>> + Send;
    /// Waits until the document may have changed.
    fn changed(&mut self) -> impl Future<Output = ()> + Send;
    /// The number the source gives the document it loaded last (the control plane's
    /// revision), so `sluice_catalog_version` and `/ready` show it; `None` (a file): the
    /// reloader counts installs.
    fn version(&self) -> Option<u64> {
        None
    }
}

/// The version to give a newly loaded document: the source's own number when it has one
/// and it moves forward, else one more than the current.
fn next_version(source: &impl CatalogSource, current: u64) -> u64 {
    source
        .version()
        .filter(|v| *v > current)
        .unwrap_or(current + 1)
}

/// Why a catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading failed.
    #[error("cannot read {what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document is invalid (every problem found).
    #[error("invalid catalog: {0}")]
    Invalid(#[from] Problems),
    /// Neither the source nor a last-known-good copy could be loaded.
    #[error("no catalog: {source_error}; and no usable last-known-good copy at {lkg}: {lkg_error}")]
    NoCatalog {
        /// Why the source failed.
        source_error: Box<LoadError>,
        /// The copy's path.
        lkg: PathBuf,
        /// Why the copy failed.
        lkg_error: Box<LoadError>,
    },
}

impl From<Invalid> for LoadError {
    fn from(one: Invalid) -> Self {
        Self::Invalid(one.into())
    }
}

/// Loads the first snapshot: from the source, else from the last-known-good copy.
pub async fn open_store(
    source: &mut impl CatalogSource,
    lkg: &Path,
) -> Result<(Live, Document), LoadError> {
    let installable = |doc: Document, version: u64| {
        let snapshot = Snapshot::try_build(version, &doc)?;
        Ok::<_, LoadError>((doc, snapshot))
    };
    let loaded = source.load().await;
    let version = next_version(source, 0);
    let (doc, snapshot) = match loaded.and_then(|doc| installable(doc, version)) {
        Ok((doc, snapshot)) => {
            save_last_known_good(lkg, &doc).await;
            (doc, snapshot)
        }
        Err(source_error) => {
            telemetry_reload_error();
            match load_last_known_good(lkg)
                .await
                .and_then(|doc| installable(doc, 1))
            {
                Ok(loaded) => {
                    tracing::error!(error = %source_error, lkg = %lkg.display(), "catalog source unusable; serving the last-known-good copy");
                    loaded
                }
                Err(lkg_error) => {
                    return Err(LoadError::NoCatalog {
                        source_error: Box::new(source_error),
                        lkg: lkg.to_owned(),
                        lkg_error: Box::new(lkg_error),
                    });
                }
            }
        }
    };
    record_installed(&snapshot);
    tracing::info!(source = %source.describe(), version = snapshot.version(), sources = snapshot.sources().len(), "catalog loaded");
    Ok((Live::new(snapshot), doc))
}

/// Starts the task that reloads the catalog whenever `source` reports a change.
/// An invalid document keeps the current snapshot, is logged and counted.
pub fn spawn_reloader(
    mut source: impl CatalogSource,
    store: Live,
    mut current: Document,
    lkg: PathBuf,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = source.changed() => {}
            }
            let loaded = source.load().await;
            let version = next_version(&source, store.snapshot().version());
            let loaded = loaded.and_then(|doc| {
                if doc == current {
                    return Ok(None);
                }
                let snapshot = Snapshot::try_build(version, &doc)?;
                Ok(Some((doc, snapshot)))
            });
            match loaded {
                Ok(None) => last_error = None,
                Ok(Some((doc, snapshot))) => {
                    record_installed(&snapshot);
                    store.install(snapshot);
                    tracing::info!(source = %source.describe(), version, "catalog reloaded");
                    save_last_known_good(&lkg, &doc).await;
                    current = doc;
                    last_error = None;
                }
                Err(error) => {
                    telemetry_reload_error();
                    // Log each distinct problem once, not at every poll.
                    let text = error.to_string();
                    if last_error.as_deref() != Some(text.as_str()) {
                        tracing::error!(source = %source.describe(), %error, "catalog reload failed; keeping the last good snapshot");
                        last_error = Some(text);
                    }
                }
            }
        }
    })
}

fn record_installed(snapshot: &Snapshot) {
    telemetry::gauge(telemetry::CATALOG_VERSION, &[]).set(snapshot.version() as f64);
    telemetry::gauge(telemetry::CATALOG_SOURCES, &[]).set(snapshot.sources().len() as f64);
    telemetry::gauge(telemetry::CATALOG_WRITE_KEYS, &[]).set(snapshot.key_count() as f64);
    telemetry::counter(telemetry::CATALOG_RELOADS, &[]).increment(1);
    feed_up(true);
}

fn telemetry_reload_error() {
    telemetry::counter(telemetry::CATALOG_RELOAD_ERRORS, &[]).increment(1);
    feed_up(false);
}

/// Says whether the catalog's source answers (`sluice_catalog_feed_up`).
pub fn feed_up(up: bool) {
    telemetry::gauge(telemetry::CATALOG_FEED_UP, &[]).set(if up { 1.0 } else { 0.0 });
}

async fn load_last_known_good(path: &Path) -> Result<Document, LoadError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| LoadError::Io {
            what: format!("last-known-good catalog {}", path.display()),
            source,
        })?;
    Ok(Document::parse_json(&bytes)?)
}

/// Writes the hashed document next to the log: temp file, fsync, rename.
async fn save_last_known_good(path: &Path, doc: &Document) {
    let path = path.to_owned();
    let doc = Arc::new(doc.hashed());
    let result = tokio::task::spawn_blocking(move || write_atomically(&path, &doc)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot save last-known-good catalog");
        }
        Err(error) => tracing::warn!(%error, "last-known-good save task failed"),
    }
}

/// The copy holds destination settings (credentials among them): owner-only.
fn write_atomically(path: &Path, doc: &Document) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(doc)?;
    text.push(b'\n');
    crate::disk::replace(
        path,
        &text,
        crate::disk::Access::Private,
        &crate::disk::Faults::default(),
    )
}
