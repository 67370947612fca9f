//! messageId de-duplication inside a bounded time window, per source.
//!
//! Ids are remembered only after their events are durable, so a retry of a request
//! that failed is never mistaken for a duplicate. Two copies racing in at the same
//! instant may both be stored: delivery is at-least-once and keeps the messageId.
//! Keys are per source so one source cannot suppress another's events.
//!
//! # Structure
//! A key is the 128-bit XXH3 digest of `(source, messageId)`: 16 bytes whatever the
//! id's length (a false match needs a 128-bit collision). Keys live in
//! [`GENERATIONS`] hash sets, each covering `window / (GENERATIONS - 1)` of time: a
//! lookup checks them all, an insert goes to the newest, and when the newest is full
//! of time the oldest set is dropped whole. So an id is remembered for at least the
//! window and at most a generation longer, at ~20 bytes an id. The sets are sharded
//! by key to keep lock hold times and contention small.
//!
//! `max_entries` bounds memory: when the ids remembered would pass it, the oldest
//! generation is dropped early (the window shrinks under extreme load) and
//! `sluice_dedup_early_rotations_total` counts it.
//!
//! (moka was the first choice; under load it cost ~15 % of the request path's CPU and
//! ~300 bytes per id, which broke the memory target, so this structure replaced it.)

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config;
use crate::telemetry;

/// Hash sets per shard: the window is split into `GENERATIONS - 1` slices.
pub const GENERATIONS: usize = 5;
const SHARDS: usize = 16;

/// A hasher for keys that are already uniformly distributed digests.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

/// A set of digests hashed by [`DigestHasher`].
pub type DigestSet = HashSet<u128, BuildHasherDefault<DigestHasher>>;

struct Shard {
    generations: VecDeque<DigestSet>,
    newest_since: Instant,
    len: usize,
}

/// Recently stored `(source, messageId)` digests.
pub struct Dedup {
    shards: Option<Vec<Mutex<Shard>>>,
    slice: Duration,
    max_per_shard: usize,
}

impl Dedup {
    /// A window as configured (`window_secs = 0`: off).
    pub fn new(config: &config::Dedup) -> Self {
        let slice = Duration::from_secs(config.window_secs) / (GENERATIONS as u32 - 1);
        let shards = (config.window_secs > 0).then(|| {
            (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        generations: (0..GENERATIONS).map(|_| DigestSet::default()).collect(),
                        newest_since: Instant::now(),
                        len: 0,
                    })
                })
                .collect()
        });
        Self {
            shards,
            slice,
            max_per_shard: (config.max_entries as usize / SHARDS).max(1),
        }
    }

    /// The key of a message.
    pub fn key(source_id: &str, message_id: &str) -> u128 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(source_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(message_id.as_bytes());
        hasher.digest128()
    }

    fn shard(&self, key: u128) -> Option<&Mutex<Shard>> {
        self.shards
            .as_ref()
            .map(|s| &s[(key >> 120) as usize % SHARDS])
    }

    /// Whether `key` was stored inside the window.
    pub fn seen(&self, key: u128) -> bool {
        let Some(shard) = self.shard(key) else {
            return false;
        };
        shard
            .lock()
            .map(|mut s| {
                s.advance(Instant::now(), self.slice);
                s.generations.iter().any(|g| g.contains(&key))
            })
            .unwrap_or(false)
    }

    /// Remembers durably stored keys.
    pub fn remember(&self, keys: impl IntoIterator<Item = u128>) {
        if self.shards.is_none() {
            return;
        }
        let now = Instant::now();
        for key in keys {
            let Some(Ok(mut shard)) = self.shard(key).map(Mutex::lock) else {
                continue;
            };
            shard.advance(now, self.slice);
            if shard.len >= self.max_per_shard {
                metrics::counter!(telemetry::DEDUP_EARLY_ROTATIONS).increment(1);
                shard.rotate(now);
            }
            if let Some(newest) = shard.generations.back_mut()
                && newest.insert(key)
            {
                shard.len += 1;
            }
        }
    }
}

impl Shard {
    /// Rotates once for every time slice that has passed (at most a full turn).
    fn advance(&mut self, now: Instant, slice: Duration) {
        let elapsed = now.duration_since(self.newest_since);
        if elapsed < slice {
            return;
        }
        let turns = (elapsed.as_nanos() / slice.as_nanos().max(1)).min(GENERATIONS as u128);
        for _ in 0..turns {
            self.rotate(now);
        }
    }

    /// Drops the oldest generation and opens a new one.
    fn rotate(&mut self, now: Instant) {
        if let Some(oldest) = self.generations.pop_front() {
            self.len -= oldest.len();
        }
        self.generations.push_back(DigestSet::default());
        self.newest_since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dedup(window_secs: u64, max_entries: u64) -> Dedup {
        Dedup::new(&config::Dedup {
            window_secs,
            max_entries,
        })
    }

    #[test]
    fn remembers_within_the_window_and_per_source() {
        let d = dedup(60, 1000);
        let a = Dedup::key("web", "m1");
        assert!(!d.seen(a));
        d.remember([a]);
        assert!(d.seen(a));
        assert!(
            !d.seen(Dedup::key("app", "m1")),
            "another source's id is another key"
        );
        assert!(!dedup(0, 1000).seen(a), "window 0 is off");
    }

    #[test]
    fn forgets_after_the_window_has_passed() {
        let mut d = dedup(4, 1000);
        d.slice = Duration::from_millis(1);
        let a = Dedup::key("web", "m1");
        d.remember([a]);
        assert!(d.seen(a));
        std::thread::sleep(Duration::from_millis(2 * GENERATIONS as u64));
        assert!(!d.seen(a));
    }

    #[test]
    fn memory_stays_bounded() {
        let d = dedup(3600, 16 * 10);
        for n in 0..10_000 {
            d.remember([Dedup::key("web", &n.to_string())]);
        }
        let total: usize = d
            .shards
            .as_ref()
            .expect("on")
            .iter()
            .map(|s| s.lock().expect("lock").len)
            .sum();
        assert!(total <= 16 * 10 + 16, "{total} ids kept");
        assert!(d.seen(Dedup::key("web", "9999")), "the newest are kept");
    }
}
