//! Feeding the [`Live`] from a [`CatalogSource`], with a last-known-good copy on disk.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::document::{Invalid, Problems};
use super::{Document, Live, Snapshot};
use crate::control::secret::Key;
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

/// The last-known-good copy of the catalog: where it is kept, and the key that seals it.
///
/// The copy holds destination credentials when the process delivers. With the control
/// plane in the process it is sealed with the store's secret key (as the credentials are
/// in the store); on a remote node with a key derived from the node's credential, so the
/// file alone opens nothing. Only a file catalog's copy is plain: the catalog file
/// beside it holds the same settings in the operator's own hands. A sealed copy is
/// refused without its key, and a plain one is refused where a key is expected.
#[derive(Clone)]
pub struct LastKnownGood {
    /// The file (`log.dir/catalog.lkg.json`).
    pub path: PathBuf,
    /// The sealing key, when the catalog's origin has one.
    pub seal: Option<Arc<Key>>,
}

impl std::fmt::Debug for LastKnownGood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastKnownGood")
            .field("path", &self.path)
            .field("sealed", &self.seal.is_some())
            .finish()
    }
}

/// What a sealed copy is bound to (a sealed value moved elsewhere does not open).
const SEAL_CONTEXT: &str = "catalog.lkg";

/// Loads the first snapshot: from the source, else from the last-known-good copy.
pub async fn open_store(
    source: &mut impl CatalogSource,
    lkg: &LastKnownGood,
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
                    tracing::error!(error = %source_error, lkg = %lkg.path.display(), "catalog source unusable; serving the last-known-good copy");
                    loaded
                }
                Err(lkg_error) => {
                    return Err(LoadError::NoCatalog {
                        source_error: Box::new(source_error),
                        lkg: lkg.path.clone(),
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
    lkg: LastKnownGood,
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
    telemetry::CATALOG_VERSION
        .with([])
        .set(snapshot.version() as f64);
    telemetry::CATALOG_SOURCES
        .with([])
        .set(snapshot.sources().len() as f64);
    telemetry::CATALOG_WRITE_KEYS
        .with([])
        .set(snapshot.key_count() as f64);
    telemetry::CATALOG_RELOADS.with([]).increment(1);
    feed_up(true);
}

fn telemetry_reload_error() {
    telemetry::CATALOG_RELOAD_ERRORS.with([]).increment(1);
    feed_up(false);
}

/// Says whether the catalog's source answers (`sluice_catalog_feed_up`).
pub fn feed_up(up: bool) {
    telemetry::CATALOG_FEED_UP
        .with([])
        .set(if up { 1.0 } else { 0.0 });
}

async fn load_last_known_good(lkg: &LastKnownGood) -> Result<Document, LoadError> {
    let path = &lkg.path;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| LoadError::Io {
            what: format!("last-known-good catalog {}", path.display()),
            source,
        })?;
    let unusable = |why: &str| LoadError::Io {
        what: format!("last-known-good catalog {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned()),
    };
    let sealed = bytes.starts_with(SEALED_PREFIX.as_bytes());
    match (&lkg.seal, sealed) {
        (Some(key), true) => {
            let text = std::str::from_utf8(&bytes).map_err(|_| unusable("not UTF-8"))?;
            let plain = key
                .open(text.trim_end(), SEAL_CONTEXT)
                .map_err(|_| unusable("sealed with another key (or altered)"))?;
            Ok(Document::parse_json(plain.expose().as_bytes())?)
        }
        (Some(_), false) => Err(unusable(
            "not sealed, but this node seals its copy: refusing a copy it did not write",
        )),
        (None, true) => Err(unusable(
            "sealed, and this catalog origin has no key to open it",
        )),
        (None, false) => Ok(Document::parse_json(&bytes)?),
    }
}

/// How a sealed copy starts (the sealed text form's version tag).
const SEALED_PREFIX: &str = "v1:";

/// Writes the hashed document next to the log (sealed when there is a key): temp
/// file, fsync, rename.
async fn save_last_known_good(lkg: &LastKnownGood, doc: &Document) {
    let path = lkg.path.clone();
    let seal = lkg.seal.clone();
    let doc = Arc::new(doc.hashed());
    let result =
        tokio::task::spawn_blocking(move || write_atomically(&path, &doc, seal.as_deref())).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot save last-known-good catalog");
        }
        Err(error) => tracing::warn!(%error, "last-known-good save task failed"),
    }
}

/// The copy holds destination settings (credentials among them): owner-only, and
/// sealed when there is a key.
fn write_atomically(path: &Path, doc: &Document, seal: Option<&Key>) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(doc)?;
    if let Some(key) = seal {
        let json = String::from_utf8(text).map_err(std::io::Error::other)?;
        text = key
            .seal(&json, SEAL_CONTEXT)
            .map_err(std::io::Error::other)?
            .into_bytes();
    }
    text.push(b'\n');
    crate::disk::replace(
        path,
        &text,
        crate::disk::Access::Private,
        &crate::disk::Faults::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
        [[sources]]
        id = "web"
        write_keys = [{ key = "the-write-key" }]
        [[destinations]]
        id = "hook"
        type = "webhook"
        sources = ["web"]
        [destinations.settings]
        url = "https://example.com/in"
        secret = "the-signing-secret"
    "#;

    fn copy(dir: &Path, seal: Option<[u8; 32]>) -> LastKnownGood {
        LastKnownGood {
            path: dir.join("catalog.lkg.json"),
            seal: seal.map(|bytes| Arc::new(Key::from_bytes(&bytes))),
        }
    }

    #[tokio::test]
    async fn a_sealed_copy_shows_no_credential_and_opens_only_with_its_key() {
        let dir = tempfile::tempdir().expect("dir");
        let doc = Document::parse(CATALOG).expect("catalog");
        let sealed = copy(dir.path(), Some([1; 32]));
        save_last_known_good(&sealed, &doc).await;
        let text = std::fs::read_to_string(&sealed.path).expect("written");
        assert!(text.starts_with(SEALED_PREFIX), "{text}");
        for secret in ["the-signing-secret", "the-write-key", "example.com"] {
            assert!(!text.contains(secret), "{secret} in the sealed copy");
        }
        let back = load_last_known_good(&sealed).await.expect("opens");
        assert_eq!(back, doc.hashed());

        // Another key, no key: refused, never half-read.
        for other in [copy(dir.path(), Some([2; 32])), copy(dir.path(), None)] {
            let error = load_last_known_good(&other).await.expect_err("refused");
            assert!(matches!(error, LoadError::Io { .. }), "{error}");
        }
    }

    #[tokio::test]
    async fn a_node_that_seals_refuses_a_plain_copy_and_a_file_catalog_keeps_its_own() {
        let dir = tempfile::tempdir().expect("dir");
        let doc = Document::parse(CATALOG).expect("catalog");
        let plain = copy(dir.path(), None);
        save_last_known_good(&plain, &doc).await;
        assert_eq!(
            load_last_known_good(&plain).await.expect("plain"),
            doc.hashed()
        );
        let error = load_last_known_good(&copy(dir.path(), Some([1; 32])))
            .await
            .expect_err("a planted plain copy is refused where a key is expected");
        assert!(error.to_string().contains("not sealed"), "{error}");
    }

    #[test]
    fn keys_derived_from_different_credentials_do_not_open_each_other() {
        let a = Key::derived(b"slc_node_one", "purpose");
        let b = Key::derived(b"slc_node_two", "purpose");
        let sealed = a.seal("text", SEAL_CONTEXT).expect("seal");
        assert!(b.open(&sealed, SEAL_CONTEXT).is_err());
        let again = Key::derived(b"slc_node_one", "purpose");
        assert_eq!(
            again.open(&sealed, SEAL_CONTEXT).expect("open").expose(),
            "text"
        );
    }
}
