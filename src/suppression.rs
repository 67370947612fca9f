//! Users suppressed at the edge (Segment's `SUPPRESS_ONLY` regulations): a suppressed
//! user's new events are acknowledged as any other's and neither stored nor forwarded.
//!
//! The control plane keeps the list ([`crate::control::store::regulations`]); every
//! gateway holds a copy, [`Suppressions`], and follows the list's changes in order
//! ([`start`]) from the store in its own process or from `GET /internal/v1/suppressions`
//! of a remote control plane, so a change reaches it within a second.
//!
//! The copy holds a 128-bit keyed digest (XXH3 with a seed drawn at start) of each
//! scope and user id, not the ids: 16 bytes per suppression however long the id, one
//! hash-set probe per scope per event, and no user id in the gateway's memory. Two
//! different ids share a digest with odds of about 2⁻¹²⁸ per pair.

mod follow;
mod remote;
mod saved;

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

pub use follow::{Feed, FeedError, PAGE, Page, start};
pub use remote::RemoteFeed;
pub use saved::SavedError;

use crate::gateway::dedup::DigestHasher;
use crate::telemetry;

/// One change of the suppression list, in the order the control plane made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Change {
    /// Position in the list's history (unique, rising).
    pub seq: u64,
    /// The workspace.
    pub workspace: String,
    /// The source (`None`: every source of the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The user id.
    pub subject: String,
    /// Suppressed (true) or lifted (false).
    pub suppressed: bool,
}

/// What a suppression applies to: a workspace, or a source of one (source ids are
/// unique only while the source exists, so its workspace is part of its scope).
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Workspace(&'a str),
    Source(&'a str, &'a str),
}

type DigestSet = HashSet<u128, BuildHasherDefault<DigestHasher>>;

/// The digests and the key they are made with, swapped together.
#[derive(Debug, Default)]
struct Table {
    seed: u64,
    digests: DigestSet,
}

impl Table {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            digests: DigestSet::default(),
        }
    }

    /// The keyed digest of a scope and a user id: a tag, then each part followed by byte
    /// 0xFF, which no id contains (not UTF-8), so `("a", "bc")` and `("ab", "c")` stay
    /// apart.
    fn digest(&self, scope: Scope<'_>, user_id: &str) -> u128 {
        let (tag, workspace, source) = match scope {
            Scope::Workspace(w) => (b'w', w, ""),
            Scope::Source(w, s) => (b's', w, s),
        };
        let parts = [workspace, source, user_id];
        let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        buf[0] = tag;
        let mut at = 1;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part.as_bytes());
            buf[at + part.len()] = 0xFF;
            at += part.len() + 1;
        }
        xxhash_rust::xxh3::xxh3_128_with_seed(buf, self.seed)
    }
}

/// A gateway's copy of the suppression list.
#[derive(Debug)]
pub struct Suppressions {
    table: RwLock<Table>,
    /// The table's size, read without the lock: an empty list costs one load per event.
    len: AtomicUsize,
    /// The last change applied.
    applied: AtomicU64,
}

impl Default for Suppressions {
    fn default() -> Self {
        Self::new()
    }
}

impl Suppressions {
    /// An empty list.
    pub fn new() -> Self {
        Self::with_table(Table::new(uuid::Uuid::new_v4().as_u64_pair().0), 0)
    }

    fn with_table(table: Table, applied: u64) -> Self {
        Self {
            len: AtomicUsize::new(table.digests.len()),
            table: RwLock::new(table),
            applied: AtomicU64::new(applied),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty list with the same key, to load a new copy into on the side.
    pub fn empty_like(&self) -> Self {
        Self::with_table(Table::new(self.read().seed), 0)
    }

    /// Puts `fresh` in force in one swap (its key with it).
    pub fn replace_with(&self, fresh: Self) {
        let applied = fresh.applied();
        let fresh = fresh
            .table
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut table = self.write();
        *table = fresh;
        self.len.store(table.digests.len(), Ordering::Relaxed);
        self.applied.store(applied, Ordering::Relaxed);
        drop(table);
        self.publish();
    }

    /// Whether `user_id`'s events from `source` (of `workspace`, when known) are
    /// suppressed: workspace-wide or in that source.
    pub fn holds(&self, workspace: Option<&str>, source: &str, user_id: &str) -> bool {
        if self.len.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let Some(workspace) = workspace else {
            // Every suppression names a workspace: a source without one has none.
            return false;
        };
        let table = self.read();
        table
            .digests
            .contains(&table.digest(Scope::Workspace(workspace), user_id))
            || table
                .digests
                .contains(&table.digest(Scope::Source(workspace, source), user_id))
    }

    /// Applies `changes` (in `seq` order; those already applied are skipped).
    pub fn apply(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let applied = self.applied.load(Ordering::Relaxed);
        let mut table = self.write();
        let mut last = applied;
        for change in changes.iter().filter(|c| c.seq > applied) {
            let scope = match &change.source {
                Some(source) => Scope::Source(&change.workspace, source),
                None => Scope::Workspace(&change.workspace),
            };
            let digest = table.digest(scope, &change.subject);
            if change.suppressed {
                table.digests.insert(digest);
            } else {
                table.digests.remove(&digest);
            }
            last = last.max(change.seq);
        }
        self.len.store(table.digests.len(), Ordering::Relaxed);
        self.applied.store(last, Ordering::Relaxed);
        drop(table);
        self.publish();
    }

    fn publish(&self) {
        telemetry::SUPPRESSED_USERS.with([]).set(self.len() as f64);
        telemetry::SUPPRESSION_SEQ
            .with([])
            .set(self.applied() as f64);
    }

    /// How many suppressions this copy and `other` disagree on.
    pub fn drift_from(&self, other: &Self) -> usize {
        let mine = self.read();
        let theirs = other.read();
        if mine.seed != theirs.seed {
            return mine.digests.len().max(theirs.digests.len());
        }
        mine.digests.symmetric_difference(&theirs.digests).count()
    }

    /// How many suppressions it holds.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `seq` of the last change applied (0: none yet).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Bytes its table takes (for the benchmark's memory figure): 16 per slot and one
    /// control byte, at the set's capacity.
    pub fn table_bytes(&self) -> usize {
        self.read().digests.capacity() * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: u64, source: Option<&str>, subject: &str, suppressed: bool) -> Change {
        Change {
            seq,
            workspace: "ws".into(),
            source: source.map(str::to_owned),
            subject: subject.into(),
            suppressed,
        }
    }

    #[test]
    fn scopes_are_apart_and_lifts_apply_in_order() {
        let list = Suppressions::new();
        assert!(!list.holds(Some("ws"), "web", "u1"));
        list.apply(&[
            change(1, None, "u1", true),
            change(2, Some("web"), "u2", true),
        ]);
        assert_eq!(list.len(), 2);
        // Workspace-wide: every source of the workspace, not another workspace's.
        assert!(list.holds(Some("ws"), "web", "u1"));
        assert!(list.holds(Some("ws"), "ios", "u1"));
        assert!(!list.holds(Some("other"), "web", "u1"));
        assert!(!list.holds(None, "web", "u1"));
        // Per source: that source only.
        assert!(list.holds(Some("ws"), "web", "u2"));
        assert!(!list.holds(Some("ws"), "ios", "u2"));
        // A source id is not a workspace id, nor the other way round; a source of the
        // same id in another workspace is another source.
        assert!(!list.holds(Some("web"), "x", "u2"));
        assert!(!list.holds(Some("other"), "web", "u2"));
        assert!(!list.holds(None, "web", "u2"));
        // A lift, then an old change again (skipped: already applied).
        list.apply(&[change(3, None, "u1", false)]);
        list.apply(&[change(1, None, "u1", true)]);
        assert!(!list.holds(Some("ws"), "web", "u1"));
        assert_eq!(list.applied(), 3);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn ids_are_not_confused_at_their_boundary_or_length() {
        let list = Suppressions::new();
        let long = "x".repeat(1_000);
        list.apply(&[
            change(1, Some("ab"), "c", true),
            change(2, Some("web"), &long, true),
        ]);
        assert!(list.holds(Some("ws"), "ab", "c"));
        assert!(!list.holds(Some("ws"), "a", "bc"));
        assert!(!list.holds(Some("wsa"), "b", "c"));
        assert!(list.holds(Some("ws"), "web", &long));
        assert!(!list.holds(Some("ws"), "web", &long[1..]));
    }
}
