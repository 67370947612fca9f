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

use super::{Backend, revision_on};

/// The notification channel commits announce their revision on.
pub const CHANNEL: &str = "sluice_revision";

/// Starts following the database behind `pool`; ends once the store is closed or gone.
pub(super) fn spawn(
    backend: Backend,
    url: &str,
    pool: AnyPool,
    revision: Weak<watch::Sender<u64>>,
    poll: Duration,
) {
    let follower = Follower {
        pool,
        revision,
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
    revision: Weak<watch::Sender<u64>>,
    poll: Duration,
}

impl Follower {
    /// False once the store is closed or dropped.
    fn alive(&self) -> bool {
        !self.pool.is_closed() && self.revision.strong_count() > 0
    }

    /// Raises the announced revision to `seq` (never lowers it: a notification may
    /// arrive after a newer poll).
    fn announce(&self, seq: u64) {
        if let Some(sender) = self.revision.upgrade() {
            sender.send_if_modified(|r| {
                let newer = seq > *r;
                if newer {
                    *r = seq;
                }
                newer
            });
        }
    }

    /// Reads the revision from the database and announces it.
    async fn read(&self) {
        let Ok(mut conn) = self.pool.acquire().await else {
            return;
        };
        if let Ok(seq) = revision_on(&mut conn).await {
            self.announce(seq);
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
                        Ok(Some(note)) => match note.payload().parse::<u64>() {
                            Ok(seq) => self.announce(seq),
                            Err(_) => self.read().await,
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

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
