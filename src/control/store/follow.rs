//! Other processes' changes on the same database, announced on this store's revision
//! channel.
//!
//! Several control-plane processes may share one PostgreSQL database. Each commit sends
//! `NOTIFY sluice_revision, '<seq>'` in its transaction (delivered when it commits); every
//! store listens on that channel and wakes its feeds and long polls at once. A
//! notification sent while the listening connection was down is lost for good, so the
//! revision is also read every `poll` (and at once after a reconnect): a change is seen
//! within milliseconds normally and within `poll` at worst. SQLite has no notifications
//! (and is one process in practice): it is polled.

use std::sync::Weak;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::{Backend, catalog_revision_on, raise, revision_on};

/// The notification channel commits announce their revision on.
pub const CHANNEL: &str = "sluice_revision";

/// The revisions a follower announces: the change revision and the catalog's.
pub(super) struct Heads {
    /// Every change's revision.
    pub change: Weak<watch::Sender<u64>>,
    /// The catalog's revision.
    pub catalog: Weak<watch::Sender<u64>>,
}

/// Starts following the database behind `pool`; ends once the store is closed or gone.
pub(super) fn spawn(backend: Backend, url: &str, pool: AnyPool, heads: Heads, poll: Duration) {
    let follower = Follower {
        pool,
        heads,
        poll: poll.max(Duration::from_millis(10)),
    };
    match backend {
        Backend::Sqlite => {
            tokio::spawn(follower.poll_only());
        }
        Backend::Postgres => {
            tokio::spawn(follower.listen(url.to_owned()));
        }
    }
}

struct Follower {
    pool: AnyPool,
    heads: Heads,
    poll: Duration,
}

impl Follower {
    /// False once the store is closed or dropped.
    fn alive(&self) -> bool {
        !self.pool.is_closed() && self.heads.change.strong_count() > 0
    }

    /// Raises the announced revisions (never lowers them: a notification may arrive
    /// after a newer poll).
    fn announce(&self, seq: u64, catalog: Option<u64>) {
        if let Some(sender) = self.heads.change.upgrade() {
            raise(&sender, seq);
        }
        if let (Some(sender), Some(catalog)) = (self.heads.catalog.upgrade(), catalog) {
            raise(&sender, catalog);
        }
    }

    /// Reads both revisions from the database and announces them.
    async fn read(&self) {
        let Ok(mut conn) = self.pool.acquire().await else {
            return;
        };
        if let (Ok(seq), Ok(catalog)) = (
            revision_on(&mut conn).await,
            catalog_revision_on(&mut conn).await,
        ) {
            self.announce(seq, Some(catalog));
        }
    }

    async fn poll_only(self) {
        while self.alive() {
            tokio::time::sleep(self.poll).await;
            self.read().await;
        }
    }

    /// LISTEN, with the poll as the backstop; reconnects with the poll as its pace.
    async fn listen(self, url: String) {
        let mut complained = false;
        while self.alive() {
            let mut listener = match connect(&url).await {
                Ok(listener) => {
                    if std::mem::take(&mut complained) {
                        tracing::info!("control-plane change notifications: listening again");
                    }
                    listener
                }
                Err(error) => {
                    if !std::mem::replace(&mut complained, true) {
                        tracing::warn!(%error, poll = ?self.poll, "control-plane change notifications unavailable; polling the revision");
                    }
                    tokio::time::sleep(self.poll).await;
                    self.read().await;
                    continue;
                }
            };
            // Whatever was committed while no one listened.
            self.read().await;
            while self.alive() {
                tokio::select! {
                    received = listener.try_recv() => match received {
                        Ok(Some(note)) => match parse(note.payload()) {
                            Some((seq, catalog)) => self.announce(seq, catalog),
                            None => self.read().await,
                        },
                        // The connection dropped (and is being re-established):
                        // anything sent meanwhile is lost, so read.
                        Ok(None) => self.read().await,
                        Err(error) => {
                            tracing::debug!(%error, "change notifications: listener failed");
                            break;
                        }
                    },
                    () = tokio::time::sleep(self.poll) => self.read().await,
                }
            }
        }
    }
}

/// A commit's payload: `<revision>` or `<revision>:<catalog revision>`.
fn parse(payload: &str) -> Option<(u64, Option<u64>)> {
    match payload.split_once(':') {
        Some((seq, catalog)) => Some((seq.parse().ok()?, Some(catalog.parse().ok()?))),
        None => Some((payload.parse().ok()?, None)),
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
