//! The suppression list on the control plane's side: its changes for gateways, waited
//! for (the gateway in this process reads them through [`StoreFeed`], remote ones
//! through `GET /internal/v1/suppressions`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::store::{Store, StoreError, regulations};
use crate::suppression::{Feed, FeedError, PAGE, Page};

/// How long the gateway in this process waits for a change before asking again.
const WAIT: Duration = Duration::from_secs(25);

/// The list's head and up to [`PAGE`] changes past `after`; with none, waits until a
/// change commits (any change of the store wakes it), `wait` passes or `closing` is
/// cancelled.
pub async fn changes_waiting(
    store: &Store,
    after: u64,
    wait: Duration,
    closing: &CancellationToken,
) -> Result<Page, StoreError> {
    let mut wake = store.watch_revision();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Marked seen before the read: a commit after it wakes the wait below.
        wake.borrow_and_update();
        let page = {
            let mut conn = store.read().await?;
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let (head, epoch) = regulations::head(&mut tx).await?;
            let changes = regulations::changes_after(&mut tx, after, PAGE).await?;
            tx.commit().await?;
            Page {
                epoch,
                head,
                changes,
            }
        };
        let now = tokio::time::Instant::now();
        let behind = page.head < after;
        if !page.changes.is_empty() || behind || now >= deadline || closing.is_cancelled() {
            return Ok(page);
        }
        tokio::select! {
            _ = tokio::time::timeout(deadline - now, wake.changed()) => {}
            () = closing.cancelled() => {}
        }
    }
}

/// The suppression list of the store in this process.
pub struct StoreFeed {
    store: Store,
    never: CancellationToken,
}

impl StoreFeed {
    /// Follows `store`'s list.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            never: CancellationToken::new(),
        }
    }
}

impl Feed for StoreFeed {
    async fn changes(&mut self, after: u64, wait: bool) -> Result<Page, FeedError> {
        let wait = if wait { WAIT } else { Duration::ZERO };
        changes_waiting(&self.store, after, wait, &self.never)
            .await
            .map_err(|e| FeedError::Unreachable(e.to_string()))
    }

    fn describe(&self) -> String {
        format!("the control plane's store ({:?})", self.store.backend())
    }
}
