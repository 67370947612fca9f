//! Keeping a gateway's [`Suppressions`] up to date: pages of changes past the last one
//! applied, asked again at once while pages come back full, else waited for.
//!
//! A list that is not the one followed (another store: its epoch differs; the same store
//! restored from an older backup: its head is behind what was applied) is loaded again
//! from the start on the side and swapped in whole, so the old copy keeps working until
//! the new one is complete. A restored store whose head has already passed what a gateway
//! applied cannot be told apart by position: so the whole list is also loaded again
//! every [`FULL_RELOAD`], and any drift is corrected and said at WARN.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Change, Suppressions, saved};

/// Most changes one answer carries.
pub const PAGE: u32 = 10_000;
/// Wait before asking again after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// Longest a gateway waits at start for its first copy before it serves anyway.
const FIRST_COPY: Duration = Duration::from_secs(10);
/// How often the whole list is loaded again on the side and compared.
pub const FULL_RELOAD: Duration = Duration::from_secs(300);
/// Shortest time between two saves of the copy.
const SAVE_EVERY: Duration = Duration::from_secs(5);

/// One answer of a [`Feed`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Which list this is (random per store).
    pub epoch: String,
    /// The last `seq` the list has given out.
    pub head: u64,
    /// Up to [`PAGE`] changes past the asked position, in order (from 0: suppressions in
    /// force only). A full page means more are waiting.
    pub changes: Vec<Change>,
}

impl Page {
    fn full(&self) -> bool {
        self.changes.len() >= PAGE as usize
    }
}

/// Why a page of changes could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The control plane (or its store) did not answer.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered something else than a page of changes.
    #[error("refused: {0}")]
    Refused(String),
}

/// Where the suppression list's changes come from.
pub trait Feed: Send + 'static {
    /// Up to [`PAGE`] changes past `after`, in order. When there are none and `wait`,
    /// waits (up to a long poll) for some, then answers what there is (maybe nothing).
    fn changes(
        &mut self,
        after: u64,
        wait: bool,
    ) -> impl Future<Output = Result<Page, FeedError>> + Send;

    /// Where it reads, for the log.
    fn describe(&self) -> String;
}

/// A feed and the copy it keeps.
struct Follower<F> {
    feed: F,
    list: Arc<Suppressions>,
    /// The epoch of the list followed (none before the first answer).
    epoch: Option<String>,
    /// Where the copy is saved (none: not saved).
    saved: Option<PathBuf>,
    /// Changed since it was last saved.
    dirty: bool,
}

impl<F: Feed> Follower<F> {
    /// Takes the saved copy, if there is one.
    async fn resume(&mut self) {
        let Some(path) = self.saved.clone() else {
            return;
        };
        let loaded = tokio::task::spawn_blocking(move || saved::load(&path))
            .await
            .unwrap_or_else(|error| {
                Err(saved::SavedError::Io {
                    path: "the saved suppression list".into(),
                    source: std::io::Error::other(error.to_string()),
                })
            });
        match loaded {
            Ok(Some((copy, epoch))) => {
                self.list.replace_with(copy);
                tracing::info!(
                    suppressed = self.list.len(),
                    applied = self.list.applied(),
                    "suppression list: saved copy loaded"
                );
                self.epoch = Some(epoch);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "the saved suppression list is ignored; loading it whole");
            }
        }
    }

    /// Saves the copy if it changed (a failure is said, and tried again after the next
    /// change).
    async fn save(&mut self) {
        let (Some(path), Some(epoch), true) = (&self.saved, &self.epoch, self.dirty) else {
            return;
        };
        let (list, path, epoch) = (Arc::clone(&self.list), path.clone(), epoch.clone());
        let done = tokio::task::spawn_blocking(move || saved::save(&list, &epoch, &path)).await;
        match done {
            Ok(Ok(())) => self.dirty = false,
            Ok(Err(error)) => tracing::warn!(%error, "cannot save the suppression list"),
            Err(error) => tracing::warn!(%error, "saving the suppression list failed"),
        }
    }

    /// Asks once and applies the answer; true when more is waiting at once.
    async fn step(&mut self, wait: bool) -> Result<bool, FeedError> {
        let page = self.feed.changes(self.list.applied(), wait).await?;
        let other = self.epoch.as_deref().is_some_and(|e| e != page.epoch);
        if other || page.head < self.list.applied() {
            tracing::warn!(
                applied = self.list.applied(),
                head = page.head,
                "the control plane's suppression list is not the one followed (a replaced or restored store): loading it again"
            );
            self.reload().await?;
            return Ok(false);
        }
        self.epoch.get_or_insert(page.epoch.clone());
        self.dirty |= !page.changes.is_empty();
        self.list.apply(&page.changes);
        Ok(page.full())
    }

    /// Loads the whole list on the side, then swaps it in; returns how many suppressions
    /// the copy in force had wrong (held but not in the list, or missing from it).
    async fn reload(&mut self) -> Result<usize, FeedError> {
        let fresh = self.list.empty_like();
        let mut epoch: Option<String> = None;
        loop {
            let page = self.feed.changes(fresh.applied(), false).await?;
            if epoch.get_or_insert_with(|| page.epoch.clone()) != &page.epoch {
                return Err(FeedError::Refused(
                    "the suppression list changed epoch while loading".into(),
                ));
            }
            fresh.apply(&page.changes);
            if !page.full() {
                break;
            }
        }
        let drift = self.list.drift_from(&fresh);
        self.list.replace_with(fresh);
        self.epoch = epoch;
        self.dirty = true;
        Ok(drift)
    }
}

/// Takes the copy saved at `saved` (if any), applies every page there is now (the first
/// copy), up to 10 s, then follows in the background until `stop`, saving the copy at
/// most every 5 s while it changes, and once more when stopped. A gateway that cannot get its first copy serves with its saved one, or
/// without one (said at ERROR), and keeps trying.
pub async fn start<F: Feed>(
    feed: F,
    list: Arc<Suppressions>,
    saved: Option<PathBuf>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let mut follower = Follower {
        feed,
        list,
        epoch: None,
        saved,
        dirty: false,
    };
    follower.resume().await;
    let first = tokio::time::timeout(FIRST_COPY, async {
        while follower.step(false).await? {}
        Ok::<(), FeedError>(())
    })
    .await;
    let from = follower.feed.describe();
    let list = &follower.list;
    match first {
        Ok(Ok(())) => tracing::info!(suppressed = list.len(), %from, "suppression list loaded"),
        Ok(Err(error)) => tracing::error!(
            %error,
            %from,
            "cannot load the suppression list; serving without it until it loads"
        ),
        Err(_) => tracing::error!(
            loaded = list.len(),
            %from,
            "the suppression list did not load in {FIRST_COPY:?}; serving while it loads"
        ),
    }
    follower.save().await;
    tokio::spawn(follow(follower, stop))
}

/// Follows the list's changes until `stop`.
async fn follow<F: Feed>(mut follower: Follower<F>, stop: CancellationToken) {
    let mut failing = false;
    let mut loaded_at = tokio::time::Instant::now();
    let mut saved_at = tokio::time::Instant::now();
    loop {
        if loaded_at.elapsed() >= FULL_RELOAD {
            let reloaded = tokio::select! {
                () = stop.cancelled() => break,
                reloaded = follower.reload() => reloaded,
            };
            match reloaded {
                Ok(0) => {}
                Ok(drift) => tracing::warn!(
                    drift,
                    "the suppression list had drifted from the control plane's (a restored store?); corrected"
                ),
                Err(error) => {
                    tracing::warn!(%error, "cannot load the suppression list again to compare; keeping the copy")
                }
            }
            loaded_at = tokio::time::Instant::now();
        }
        // The copy is saved at most every SAVE_EVERY: a burst of regulations (a million
        // ids arrive as 200 of them) is one write, not one per regulation.
        let save_at = saved_at + SAVE_EVERY;
        let asked = tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(save_at), if follower.dirty => {
                follower.save().await;
                saved_at = tokio::time::Instant::now();
                continue;
            }
            asked = follower.step(true) => asked,
        };
        match asked {
            Ok(_) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(from = %follower.feed.describe(), "suppression list followed again");
                }
            }
            Err(error) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, from = %follower.feed.describe(), "cannot follow the suppression list; trying again every {RETRY:?}");
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
    // Stopping: what changed since the last save is saved now.
    follower.save().await;
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A feed that answers from a script.
    struct Scripted(VecDeque<Page>);

    impl Feed for Scripted {
        async fn changes(&mut self, _after: u64, _wait: bool) -> Result<Page, FeedError> {
            self.0
                .pop_front()
                .ok_or_else(|| FeedError::Unreachable("script ended".into()))
        }

        fn describe(&self) -> String {
            "script".into()
        }
    }

    fn page(epoch: &str, head: u64, seqs: std::ops::Range<u64>) -> Page {
        Page {
            epoch: epoch.into(),
            head,
            changes: seqs
                .map(|seq| Change {
                    seq,
                    workspace: "ws".into(),
                    source: None,
                    subject: format!("u{seq}"),
                    suppressed: true,
                })
                .collect(),
        }
    }

    fn follower(pages: Vec<Page>) -> Follower<Scripted> {
        Follower {
            feed: Scripted(pages.into()),
            list: Arc::new(Suppressions::new()),
            epoch: None,
            saved: None,
            dirty: false,
        }
    }

    #[tokio::test]
    async fn a_restored_or_replaced_list_is_loaded_again_and_swapped_in_whole() {
        let mut f = follower(vec![
            page("a", 3, 1..4),
            // Restored from an older backup: the head went back; reloaded from 0.
            page("a", 1, 1..1),
            page("a", 1, 1..2),
            // Another store altogether: a new epoch, whatever its head.
            page("b", 50, 1..1),
            page("b", 50, 40..42),
        ]);
        assert!(
            !f.step(false).await.expect("first"),
            "a short page: nothing waiting"
        );
        assert_eq!((f.list.applied(), f.list.len()), (3, 3));
        f.step(true).await.expect("restored");
        assert_eq!((f.list.applied(), f.list.len()), (1, 1));
        assert!(f.list.holds(Some("ws"), "web", "u1"));
        assert!(!f.list.holds(Some("ws"), "web", "u3"));
        f.step(true).await.expect("replaced");
        assert_eq!(f.epoch.as_deref(), Some("b"));
        assert_eq!((f.list.applied(), f.list.len()), (41, 2));
        assert!(!f.list.holds(Some("ws"), "web", "u1"));
    }

    #[tokio::test]
    async fn a_reload_corrects_a_drift_that_positions_cannot_show() {
        // The store was restored and written again past the gateway's position: same
        // epoch, a head ahead, a different history. The periodic reload sees it.
        let mut f = follower(vec![page("a", 3, 1..4)]);
        f.step(false).await.expect("first");
        let mut truth = page("a", 7, 1..3);
        truth.changes[1].subject = "other".into();
        f.feed.0 = vec![truth].into();
        let drift = f.reload().await.expect("reload");
        // u2 and u3 held wrongly, "other" missing.
        assert_eq!(drift, 3);
        assert!(f.list.holds(Some("ws"), "web", "other"));
        assert!(!f.list.holds(Some("ws"), "web", "u3"));
    }

    #[tokio::test]
    async fn a_reload_that_fails_keeps_the_copy_in_force() {
        let mut f = follower(vec![page("a", 2, 1..3), page("b", 9, 1..1)]);
        f.step(false).await.expect("first");
        // The new list's first page never comes: the old copy stays.
        assert!(f.step(true).await.is_err());
        assert!(f.list.holds(Some("ws"), "web", "u2"));
        assert_eq!(f.epoch.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn full_pages_are_asked_for_again_at_once() {
        let mut f = follower(vec![
            page("a", 20_005, 1..u64::from(PAGE) + 1),
            page("a", 20_005, u64::from(PAGE) + 1..u64::from(PAGE) + 6),
        ]);
        assert!(f.step(false).await.expect("full"));
        assert!(!f.step(false).await.expect("rest"));
        assert_eq!(f.list.len(), PAGE as usize + 5);
    }
}
