//! The control plane's store: the only code that speaks SQL.
//!
//! One code path for SQLite (the embedded default, a WAL file in the data directory) and
//! PostgreSQL (`control.database_url`), through sqlx's `Any` driver. To keep the SQL and
//! the row decoding identical on both, times are Unix milliseconds, flags are 0/1 and
//! levels are ranks, all `BIGINT`; placeholders are `$1, $2, …` (SQLite accepts them).
//!
//! Every change runs in a [`Change`]: it takes the audit chain's head row first (so
//! writers queue on one row, on both databases), makes its edits, appends its audit
//! event(s) and commits them together. The head's sequence number is also the control
//! plane's *revision*: remembered callers are valid for one revision.
//!
//! The *catalog revision* is the revision of the last change that touched what gateways
//! and delivery nodes are fed (sources, write keys, destinations, connections, tracking
//! plans, workspaces): database triggers on those tables mark `catalog_head` dirty and the
//! commit moves it. Other changes (an audited refusal, a token, a grant) leave it alone,
//! so they cost no catalog export and wake no gateway.
//!
//! One file per resource below; row types live with their SQL.

/// A query text assembled from this module's constant fragments (column lists, shared
/// filters, table names), never from input: values are always bound.
macro_rules! sql {
    ($($fmt:tt)*) => {
        sqlx::AssertSqlSafe(format!($($fmt)*))
    };
}

pub mod access_reviews;
pub mod audit_log;
pub mod catalog;
pub mod change_requests;
pub mod destinations;
pub mod elevations;
pub mod follow;
pub mod function_errors;
pub mod functions;
pub mod gateways;
pub mod grants;
pub mod groups;
pub mod invites;
pub mod labels;
pub mod nodes;
pub mod offboardings;
pub mod passwords;
pub mod plans;
pub mod regulations;
pub mod resets;
pub mod resource_changes;
pub mod scim;
pub mod sessions;
pub mod sources;
pub mod sso;
pub mod tokens;
pub mod totp;
pub mod usage;
pub mod users;
pub mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};
use tokio::sync::watch;

use super::audit::{self, Draft};
use super::secret::{self, Key};

/// How often the revision is read for other processes' changes when no poll interval
/// is given (PostgreSQL also wakes at once by notification; see [`follow`]).
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// The SQLite file's name inside the data directory.
pub const SQLITE_FILE: &str = "control.db";

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the control-plane database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no database Sluice supports.
    #[error("unsupported control.database_url (use sqlite:… or postgres://…): {0}")]
    Unsupported(String),
    /// A unique name or id is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// A stored value cannot be read back (hand-edited database, older binary).
    #[error("corrupt control-plane row: {0}")]
    Corrupt(String),
    /// Sealing or opening a destination secret failed.
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
}

impl StoreError {
    /// Maps a unique-constraint violation to [`StoreError::Conflict`].
    pub(crate) fn conflict_as(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let what = what.into();
        move |error| match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(what),
            _ => Self::Database(error),
        }
    }
}

/// The control plane's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    key: Arc<Key>,
    revision: Arc<watch::Sender<u64>>,
    catalog: Arc<watch::Sender<u64>>,
    checkpoint: Option<Arc<Checkpoint>>,
}

/// The audit chain's head, written to a file outside the database after every commit
/// (`seq hash`): someone who rewrites or cuts the chain in the database cannot make it
/// agree with this file.
#[derive(Debug)]
struct Checkpoint {
    path: std::path::PathBuf,
    /// The newest sequence number written (commits may finish out of order), and the
    /// first event this host knows was sealed keyed (every later one must be keyed).
    written: std::sync::Mutex<(u64, Option<u64>)>,
}

impl Store {
    /// `Some(false)` when a checkpoint is configured but no file exists yet: a chain
    /// rewritten wholesale would not be noticed by `verify` on this host.
    pub fn checkpoint_present(&self) -> Option<bool> {
        self.checkpoint.as_ref().map(|c| c.path.exists())
    }
}

/// The checkpoint file's name in the data directory.
pub const CHECKPOINT_FILE: &str = "audit.head";

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite:` URLs get WAL, a busy timeout and foreign keys. Other processes' changes
    /// are followed as [`Self::open_following`] does with [`DEFAULT_POLL`].
    pub async fn open(url: &str, key: Key) -> Result<Self, StoreError> {
        Self::open_following(url, key, DEFAULT_POLL).await
    }

    /// [`Self::open`], reading the revision every `poll` for changes made by other
    /// processes (on PostgreSQL their notifications wake it sooner; see [`follow`]).
    pub async fn open_following(url: &str, key: Key, poll: Duration) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unsupported(scheme_of(url)));
        };
        let sqlite_file = sqlite_path(url);
        if let Some(file) = &sqlite_file {
            private_file(file).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    // A file connection cannot go stale: no ping before each use.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA foreign_keys = ON",
                                "PRAGMA busy_timeout = 10000",
                                // 64 MiB of page cache per connection, reads through mmap.
                                "PRAGMA cache_size = -65536",
                                "PRAGMA mmap_size = 268435456",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // Statements are prepared once per connection; their plans do
                            // not depend on the values bound (the same indexes serve every
                            // workspace and user), and re-planning the visibility filter's
                            // subqueries on every execution cost more than running them.
                            sqlx::query("SET plan_cache_mode = force_generic_plan")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
        };
        migrator(backend).run(&pool).await?;
        if let Some(file) = &sqlite_file {
            // SQLite gives its -wal and -shm files the database file's mode; older
            // stores may have them readable by everyone.
            for suffix in ["-wal", "-shm"] {
                let side = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
                if side.exists() {
                    private_file(&side).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                }
            }
        }
        let head = sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
            .fetch_one(&pool)
            .await?
            .try_get::<i64, _>(0)?;
        let revision = Arc::new(watch::channel(as_u64(head)).0);
        let catalog_head = {
            let mut conn = pool.acquire().await?;
            catalog_revision_on(&mut conn).await?
        };
        let catalog = Arc::new(watch::channel(catalog_head).0);
        follow::spawn(
            backend,
            url,
            pool.clone(),
            follow::Heads {
                change: Arc::downgrade(&revision),
                catalog: Arc::downgrade(&catalog),
            },
            poll,
        );
        Ok(Self {
            pool,
            backend,
            key: Arc::new(key),
            revision,
            catalog,
            checkpoint: None,
        })
    }

    /// Opens the embedded SQLite store in `dir` (created if needed).
    pub async fn open_in(dir: &Path, key: Key) -> Result<Self, StoreError> {
        Self::open_in_following(dir, key, DEFAULT_POLL).await
    }

    /// [`Self::open_in`], reading the revision every `poll`.
    pub async fn open_in_following(
        dir: &Path,
        key: Key,
        poll: Duration,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let url = format!("sqlite://{}?mode=rwc", dir.join(SQLITE_FILE).display());
        Self::open_following(&url, key, poll).await
    }

    /// This store, checkpointing the audit chain's head to `path` after every commit
    /// and checking the chain against it in [`verify_audit`].
    pub fn with_checkpoint(mut self, path: std::path::PathBuf) -> Self {
        let written = read_checkpoint(&path)
            .ok()
            .flatten()
            .map_or((0, None), |(seq, _, keyed_from)| (seq, keyed_from));
        self.checkpoint = Some(Arc::new(Checkpoint {
            path,
            written: std::sync::Mutex::new(written),
        }));
        self
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The key sealing destination secrets.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The same key, shared (the last-known-good catalog copy is sealed with it).
    pub fn shared_key(&self) -> Arc<Key> {
        Arc::clone(&self.key)
    }

    /// A connection for reads.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<Any>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// A read-only transaction that sees one state of the database throughout (a deferred
    /// transaction on SQLite's WAL; REPEATABLE READ on PostgreSQL), with the *catalog*
    /// revision of that state: the catalog read in it is exactly that revision's.
    pub async fn consistent_read(&self) -> Result<(u64, Transaction<'static, Any>), StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let seq = catalog_revision_on(&mut tx).await?;
        Ok((seq, tx))
    }

    /// Starts a change; see [`Change`].
    pub async fn change(&self) -> Result<Change, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Taking the head row first queues writers here on both databases (a row lock
        // on PostgreSQL, the write lock on SQLite) before anything is read.
        let row = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *tx)
            .await?;
        let seq: i64 = row.try_get(0)?;
        let hash: String = row.try_get(1)?;
        Ok(Change {
            tx,
            seq: as_u64(seq),
            prev: from_hex32(&hash)?,
            revision: self.revision.clone(),
            catalog: self.catalog.clone(),
            notify: self.backend == Backend::Postgres,
            key: self.key.clone(),
            first_sealed: None,
            checkpoint: self.checkpoint.clone(),
        })
    }

    /// Commits one audit event on its own (a refusal, a reveal): nothing else changes.
    pub async fn record_alone(&self, draft: Draft) -> Result<u64, StoreError> {
        let mut change = self.change().await?;
        change.record(draft).await?;
        change.commit().await
    }

    /// The control plane's current revision (the audit chain's length), from the
    /// database: other processes may have changed it.
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let seq = revision_on(&mut conn).await?;
        self.revision.send_if_modified(|r| {
            let changed = *r != seq;
            *r = seq;
            changed
        });
        Ok(seq)
    }

    /// Wakes when the revision moves: at once for this process's commits and other
    /// processes' notified ones, within the poll interval for the rest.
    pub fn watch_revision(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Wakes when the catalog revision moves (as [`Self::watch_revision`] does).
    pub fn watch_catalog(&self) -> watch::Receiver<u64> {
        self.catalog.subscribe()
    }

    /// The catalog revision, from the database (other processes may have moved it).
    pub async fn catalog_revision(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let seq = catalog_revision_on(&mut conn).await?;
        raise(&self.catalog, seq);
        Ok(seq)
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The revision as `conn` sees it now (one indexed row; every change that matters to
/// the policy or the catalog moves it).
pub async fn revision_on(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let seq: i64 = sqlx::query("SELECT seq FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(as_u64(seq))
}

/// The file a `sqlite:` URL names (`None` for in-memory databases and other URLs).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| std::path::PathBuf::from(path))
}

/// Creates `path` empty if missing, and makes it readable by its owner only (`0600`):
/// the control plane's database holds token digests, the audit log and sealed secrets.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// The catalog revision as `conn` sees it now.
pub async fn catalog_revision_on(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    let seq: i64 = sqlx::query("SELECT seq FROM catalog_head WHERE id = 1")
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(as_u64(seq))
}

/// Raises an announced revision to `seq` (never lowers it: a notification may arrive
/// after a newer read); true when it moved.
pub(crate) fn raise(sender: &watch::Sender<u64>, seq: u64) -> bool {
    sender.send_if_modified(|r| {
        let newer = seq > *r;
        if newer {
            *r = seq;
        }
        newer
    })
}

/// The embedded migrations for a backend: the shared tables, then what differs.
fn migrator(backend: Backend) -> Migrator {
    let common = sqlx::migrate!("migrations/common");
    let own = match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
    };
    let mut all: Vec<_> = common.iter().chain(own.iter()).cloned().collect();
    all.sort_by_key(|m| m.version);
    Migrator::with_migrations(all)
}

/// One transaction of changes and the audit events that record them.
///
/// Dropping a `Change` without [`Change::commit`] rolls everything back.
pub struct Change {
    tx: Transaction<'static, Any>,
    seq: u64,
    prev: [u8; 32],
    revision: Arc<watch::Sender<u64>>,
    catalog: Arc<watch::Sender<u64>>,
    /// Announce the commit to other processes (PostgreSQL's NOTIFY).
    notify: bool,
    /// Its events' MACs are made with this key's chain key.
    key: Arc<Key>,
    /// The first event this change sealed.
    first_sealed: Option<u64>,
    checkpoint: Option<Arc<Checkpoint>>,
}

impl Change {
    /// The transaction's connection, for the resource files' SQL.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends an audit event to the chain (inside this transaction).
    pub async fn record(&mut self, draft: Draft) -> Result<u64, StoreError> {
        let event = draft.seal(self.seq + 1, self.prev, self.key.chain_key());
        self.first_sealed.get_or_insert(event.seq);
        audit_log::insert(&mut self.tx, &event).await?;
        self.seq = event.seq;
        self.prev = event.hash;
        Ok(event.seq)
    }

    /// Commits the edits and their events; the new revision is announced.
    pub async fn commit(mut self) -> Result<u64, StoreError> {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(as_i64(self.seq))
            .bind(hex32(&self.prev))
            .execute(&mut *self.tx)
            .await?;
        // The triggers marked the catalog dirty if this change touched it.
        let catalog_moved = sqlx::query(
            "UPDATE catalog_head SET seq = $1, dirty = 0 WHERE id = 1 AND dirty = 1 RETURNING seq",
        )
        .bind(as_i64(self.seq))
        .fetch_optional(&mut *self.tx)
        .await?
        .is_some();
        if self.notify {
            // Delivered to every listener when (and only if) the transaction commits:
            // `<revision>` or, when the catalog moved too, `<revision>:<catalog revision>`.
            let payload = if catalog_moved {
                format!("{}:{}", self.seq, self.seq)
            } else {
                self.seq.to_string()
            };
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(follow::CHANNEL)
                .bind(payload)
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        if let Some(checkpoint) = &self.checkpoint {
            checkpoint.write(self.seq, &self.prev, self.first_sealed);
        }
        crate::telemetry::CONTROL_REVISION
            .with([])
            .set(self.seq as f64);
        raise(&self.revision, self.seq);
        if catalog_moved {
            raise(&self.catalog, self.seq);
        }
        Ok(self.seq)
    }
}

impl Checkpoint {
    /// Records `seq` and its hash unless a newer one is written already. A failure is
    /// logged, not returned: the change is committed, and `audit verify` still checks
    /// the chain against the last checkpoint written.
    fn write(&self, seq: u64, hash: &[u8; 32], first_sealed: Option<u64>) {
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seq <= written.0 {
            return;
        }
        // Every event this code seals is keyed: the first one this host saw sealed marks
        // where an unkeyed ("legacy") event can no longer stand.
        let keyed_from = match (written.1, first_sealed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let text = match keyed_from {
            Some(k) => format!("{seq} {} {k}\n", hex32(hash)),
            None => format!("{seq} {}\n", hex32(hash)),
        };
        match crate::disk::replace(
            &self.path,
            text.as_bytes(),
            crate::disk::Access::Private,
            &crate::disk::Faults::default(),
        ) {
            Ok(()) => *written = (seq, keyed_from),
            Err(error) => {
                tracing::error!(%error, path = %self.path.display(), "cannot checkpoint the audit chain's head");
            }
        }
    }
}

/// A checkpointed head: sequence number, hash, first event sealed keyed (if known).
type Head = (u64, [u8; 32], Option<u64>);

/// The checkpoint at `path`: `None` when there is no file yet.
fn read_checkpoint(path: &Path) -> Result<Option<Head>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Database(sqlx::Error::Io(e))),
    };
    let corrupt = || StoreError::Corrupt(format!("audit checkpoint {}", path.display()));
    let mut fields = text.split_whitespace();
    let seq = fields
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(corrupt)?;
    let hash = from_hex32(fields.next().ok_or_else(corrupt)?)?;
    let keyed_from = match fields.next() {
        Some(k) => Some(k.parse().map_err(|_| corrupt())?),
        None => None,
    };
    Ok(Some((seq, hash, keyed_from)))
}

/// Milliseconds since the epoch, as stored.
pub fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A stored time back; out-of-range values are corrupt rows.
pub fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms}")))
}

/// An optional stored time back.
pub fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(time).transpose()
}

/// A new random id: `prefix` + 32 hex digits (122 random bits; never guessable).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

fn as_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Lower-case hex of 32 bytes.
pub fn hex32(bytes: &[u8; 32]) -> String {
    hex::encode(bytes)
}

/// 32 bytes from 64 hex digits.
pub fn from_hex32(text: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| StoreError::Corrupt(format!("hash {text:?}")))?;
    Ok(out)
}

fn scheme_of(url: &str) -> String {
    url.split_once(':')
        .map_or("no scheme", |(scheme, _)| scheme)
        .to_owned()
}

/// Rebuilds the chain's events for `verify` (see [`audit::verify`]).
pub async fn verify_audit(store: &Store) -> Result<Result<u64, audit::Broken>, StoreError> {
    let mut conn = store.read().await?;
    let events = audit_log::all(&mut conn).await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let head_seq = as_u64(head.try_get::<i64, _>(0)?);
    let head_hash = from_hex32(&head.try_get::<String, _>(1)?)?;
    if let Err(broken) = audit::verify(&events, store.key.chain_key()) {
        return Ok(Err(broken));
    }
    if let Some(checkpoint) = &store.checkpoint
        && let Some((seq, hash, keyed_from)) = read_checkpoint(&checkpoint.path)?
    {
        if let Some(e) = keyed_from.and_then(|k| events.iter().find(|e| e.seq >= k && !e.keyed)) {
            return Ok(Err(audit::Broken::Downgraded { seq: e.seq }));
        }
        let found = events.last().map_or(0, |e| e.seq);
        if found < seq {
            return Ok(Err(audit::Broken::Truncated {
                expected: seq,
                found,
            }));
        }
        let at = usize::try_from(seq).ok().and_then(|n| n.checked_sub(1));
        if at
            .and_then(|i| events.get(i))
            .is_some_and(|e| e.hash != hash)
        {
            return Ok(Err(audit::Broken::Checkpoint { seq }));
        }
    }
    let (last_seq, last_hash) = events
        .last()
        .map_or((0, audit::GENESIS), |e| (e.seq, e.hash));
    if last_seq != head_seq || last_hash != head_hash {
        return Ok(Err(audit::Broken::Truncated {
            expected: head_seq,
            found: last_seq,
        }));
    }
    Ok(Ok(last_seq))
}
