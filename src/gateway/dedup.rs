//! messageId de-duplication inside a bounded time window, per source.
//!
//! Ids are remembered only after their events are durable, so a retry of a request
//! that failed is never mistaken for a duplicate. Two copies racing in at the same
//! instant may both be stored: delivery is at-least-once and keeps the messageId.
//! Keys are per source so one source cannot suppress another's events.
//!
//! # Structure
//! A key is the 64-bit XXH3 digest of `(source, messageId)`. Time is cut into slices
//! of `window / (GENERATIONS - 1)`; each shard maps key → the slice (epoch) it was
//! stored in. A lookup is one probe: the key counts while its epoch is less than
//! `GENERATIONS` slices old, so an id is remembered for at least the window and at
//! most one slice longer. Expired entries are swept out when the epoch advances. At
//! ~20 bytes an id, a million ids take ~20 MB; shards keep lock hold times short.
//!
//! A false match needs two different ids of one source to share a 64-bit digest:
//! with a million ids remembered, about one request in 10^13 would be wrongly taken
//! for a duplicate.
//!
//! `max_entries` bounds memory: when a shard is full, its oldest slice is dropped
//! early (the window shrinks under extreme load) and
//! `sluice_dedup_early_rotations_total` counts it.
//!
//! (moka was the first choice; under load it cost ~15 % of the request path's CPU and
//! ~300 bytes per id, which broke the memory target. A first replacement kept one
//! hash set per slice, but five random probes per lookup cost ~5 % of CPU in cache
//! misses.)

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config;
use crate::telemetry;

/// Slices an id stays remembered: the window is `GENERATIONS - 1` slices.
pub const GENERATIONS: u32 = 5;
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

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= (n as u64) ^ ((n >> 64) as u64);
    }
}

/// A set of digests hashed by [`DigestHasher`].
pub type DigestSet = HashSet<u64, BuildHasherDefault<DigestHasher>>;
type DigestMap = HashMap<u64, u32, BuildHasherDefault<DigestHasher>>;

struct Shard {
    epochs: DigestMap,
    epoch: u32,
    epoch_since: Instant,
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
        let slice = Duration::from_secs(config.window_secs) / (GENERATIONS - 1);
        let shards = (config.window_secs > 0).then(|| {
            (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        epochs: DigestMap::default(),
                        epoch: GENERATIONS,
                        epoch_since: Instant::now(),
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
    pub fn key(source_id: &str, message_id: &str) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(source_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(message_id.as_bytes());
        hasher.digest()
    }

    fn shard(&self, key: u64) -> Option<&Mutex<Shard>> {
        self.shards
            .as_ref()
            .map(|s| &s[(key >> 56) as usize % SHARDS])
    }

    /// Whether `key` was stored inside the window.
    pub fn seen(&self, key: u64) -> bool {
        let Some(shard) = self.shard(key) else {
            return false;
        };
        shard
            .lock()
            .map(|mut s| {
                s.advance(Instant::now(), self.slice);
                s.epochs
                    .get(&key)
                    .is_some_and(|&e| s.epoch - e < GENERATIONS)
            })
            .unwrap_or(false)
    }

    /// Remembers durably stored keys.
    pub fn remember(&self, keys: impl IntoIterator<Item = u64>) {
        if self.shards.is_none() {
            return;
        }
        let now = Instant::now();
        for key in keys {
            let Some(Ok(mut shard)) = self.shard(key).map(Mutex::lock) else {
                continue;
            };
            shard.advance(now, self.slice);
            if shard.epochs.len() >= self.max_per_shard && !shard.epochs.contains_key(&key) {
                telemetry::DEDUP_EARLY_ROTATIONS.with([]).increment(1);
                shard.drop_oldest();
            }
            let epoch = shard.epoch;
            shard.epochs.insert(key, epoch);
        }
    }
}

impl Shard {
    /// Moves to the current slice and sweeps out what has expired.
    fn advance(&mut self, now: Instant, slice: Duration) {
        let elapsed = now.duration_since(self.epoch_since);
        if elapsed < slice {
            return;
        }
        let turns = (elapsed.as_nanos() / slice.as_nanos().max(1)).min(u128::from(GENERATIONS));
        self.epoch += turns as u32;
        self.epoch_since = now;
        let epoch = self.epoch;
        self.epochs.retain(|_, e| epoch - *e < GENERATIONS);
    }

    /// Forgets the oldest slice still held (to make room).
    fn drop_oldest(&mut self) {
        let Some(oldest) = self.epochs.values().copied().min() else {
            return;
        };
        self.epochs.retain(|_, e| *e != oldest);
        if oldest == self.epoch {
            // Everything was from this slice: start a new one.
            self.epoch += 1;
        }
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
            .map(|s| s.lock().expect("lock").epochs.len())
            .sum();
        assert!(total <= 16 * 10 + 16, "{total} ids kept");
        assert!(d.seen(Dedup::key("web", "9999")), "the newest are kept");
    }
}
