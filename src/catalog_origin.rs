//! Where `serve`'s catalog comes from (its origin): the file (`catalog.source = "file"`) or the
//! control plane (`"control"`: its store opened, bootstrapped on first start, and its
//! API served on the control listener); and where its usage reports are booked.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::catalog::{CatalogSource, Document, FileSource, LoadError, RemoteSource};
use crate::config::{CatalogSourceKind, Config};
use crate::control::feed::{Feed, Publisher};
use crate::control::usage::StoreLedger;
use crate::control::{api, bootstrap, secret, store::Store};
use crate::usage::RemoteLedger;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The secret key is unusable.
    #[error("control plane secret key: {0}")]
    Secret(#[from] secret::SecretError),
    /// The store could not be opened.
    #[error("control plane store: {0}")]
    Store(#[from] crate::control::store::StoreError),
    /// First-run setup failed.
    #[error("control plane first start: {0}")]
    Bootstrap(#[from] bootstrap::BootstrapError),
}

/// The catalog source of a `serve`.
pub enum Source {
    /// The catalog file.
    File(FileSource),
    /// The control plane's store.
    Control(Feed),
    /// A control plane in another process.
    Remote(RemoteSource),
}

impl Source {
    /// The key this origin's last-known-good copy is sealed with: the control plane's
    /// secret key in process, one derived from the node credential on a remote node,
    /// none for a file catalog (whose file holds the same settings in the clear).
    pub fn seal(&self) -> Option<Arc<secret::Key>> {
        match self {
            Self::File(_) => None,
            Self::Control(feed) => Some(feed.store().shared_key()),
            Self::Remote(remote) => Some(Arc::new(secret::Key::derived(
                remote.credential().expose().as_bytes(),
                "sluice catalog last-known-good v1",
            ))),
        }
    }
}

impl CatalogSource for Source {
    fn describe(&self) -> String {
        match self {
            Self::File(f) => f.describe(),
            Self::Control(c) => c.describe(),
            Self::Remote(r) => r.describe(),
        }
    }

    async fn load(&mut self) -> Result<Document, LoadError> {
        match self {
            Self::File(f) => f.load().await,
            Self::Control(c) => c.load().await,
            Self::Remote(r) => r.load().await,
        }
    }

    fn version(&self) -> Option<u64> {
        match self {
            Self::File(f) => f.version(),
            Self::Control(c) => c.version(),
            Self::Remote(r) => r.version(),
        }
    }

    async fn changed(&mut self) {
        match self {
            Self::File(f) => f.changed().await,
            Self::Control(c) => c.changed().await,
            Self::Remote(r) => r.changed().await,
        }
    }
}

/// Opens the control plane's store: `control.database_url`, else SQLite in `log.dir`;
/// the secret key from `SLUICE_SECRET_KEY` or `log.dir/secret.key` (made on first use);
/// the audit chain's head checkpointed to `log.dir/audit.head`.
pub async fn open_store(config: &Config) -> Result<Store, ControlError> {
    let env = std::env::var(secret::ENV_KEY).ok();
    let key = secret::Key::load(env.as_deref(), &config.log.dir)?;
    let url = config.control.database_url.expose();
    let poll = Duration::from_millis(config.catalog.poll_interval_ms);
    let store = if url.is_empty() {
        Store::open_in_following(&config.log.dir, key, poll).await?
    } else {
        Store::open_following(url, key, poll).await?
    };
    // The audit chain's head is checkpointed outside the database.
    Ok(store.with_checkpoint(config.log.dir.join(crate::control::store::CHECKPOINT_FILE)))
}

/// The source `config` asks for; with the control plane, also its catalog publisher and
/// store (first start done: a new store gets workspace `default`, the catalog file, and a
/// setup link, printed once on stderr).
pub async fn open(config: &Config) -> Result<(Source, Option<Publisher>), ControlError> {
    let poll = Duration::from_millis(config.catalog.poll_interval_ms);
    match config.catalog.source {
        CatalogSourceKind::File => Ok((
            Source::File(FileSource::new(&config.catalog.path, poll)),
            None,
        )),
        CatalogSourceKind::Remote => {
            let token = config.catalog.node_token.clone();
            let remote = RemoteSource::new(&config.catalog.control_url, token, &node_name(config));
            Ok((Source::Remote(remote), None))
        }
        CatalogSourceKind::Control => {
            let store = open_store(config).await?;
            let public = config.control.public_url();
            if let Some(first) =
                bootstrap::first_run(&store, &config.catalog.path, &public, Utc::now()).await?
            {
                let imported = first.imported.map_or_else(
                    || "no catalog file to import".to_owned(),
                    |i| format!("imported {} sources, {} write keys, {} destinations, {} tracking plans from {}",
                        i.sources, i.keys, i.destinations, i.plans, config.catalog.path.display()),
                );
                tracing::info!(workspace = %first.workspace.slug, "control plane initialised: {imported}");
                // The link is a credential: shown once, on the terminal, never in the log.
                eprintln!(
                    "\n  Sluice control plane is new. Create the first owner (one-time link, valid {} h):\n\n    {}\n\n  Or from a shell: sluice admin bootstrap --email you@example.com\n",
                    bootstrap::SETUP_LINK_HOURS,
                    first.setup_link
                );
            }
            let publisher = Publisher::spawn(store);
            Ok((
                Source::Control(Feed::new(publisher.clone())),
                Some(publisher),
            ))
        }
    }
}

/// The API over `publisher`'s store, as `config` sets it.
pub fn api(config: &Config, publisher: Publisher) -> Arc<api::Api> {
    let rate = std::num::NonZeroU32::new(config.control.rate_limit_per_minute)
        .unwrap_or(std::num::NonZeroU32::MIN);
    api::Api::new(
        publisher,
        rate,
        config.control.public_url(),
        config.delivery.allow_private_destinations,
        config.control.functions.then(|| config.functions.program()),
        config.control.clock.clone(),
    )
}

/// Where a `serve`'s usage reports are booked.
pub enum Books {
    /// The control plane's store, in this process.
    Store(StoreLedger),
    /// The control plane this remote gateway follows.
    Remote(RemoteLedger),
}

/// The books of `config`'s gateway: none with a file catalog (quotas are set in the
/// control plane, and a file has nowhere to keep the count).
pub fn books(config: &Config, publisher: Option<&Publisher>) -> Option<Books> {
    match (config.catalog.source, publisher) {
        (CatalogSourceKind::Control, Some(publisher)) => Some(Books::Store(StoreLedger::new(
            publisher.store().clone(),
            config.control.clock.clone(),
            &node_name(config),
        ))),
        (CatalogSourceKind::Remote, _) => Some(Books::Remote(RemoteLedger::new(
            &config.catalog.control_url,
            config.catalog.node_token.clone(),
            &node_name(config),
        ))),
        _ => None,
    }
}

/// Where a remote node (a gateway or delivery node following a remote control plane)
/// sends its functions' failed runs; none for a node with the control plane in process
/// (its runs are read where they are kept) or a file catalog.
pub fn function_errors(config: &Config) -> Option<crate::functions::report::Reporter> {
    (config.catalog.source == CatalogSourceKind::Remote).then(|| {
        crate::functions::report::Reporter::new(
            &config.catalog.control_url,
            config.catalog.node_token.clone(),
            &node_name(config),
        )
    })
}

/// The name this gateway reports as: `catalog.node_name`, else the machine's name.
fn node_name(config: &Config) -> String {
    if config.catalog.node_name.is_empty() {
        host_name()
    } else {
        config.catalog.node_name.clone()
    }
}

/// This machine's name (`HOSTNAME`, else `/etc/hostname`, else `gateway`).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}
