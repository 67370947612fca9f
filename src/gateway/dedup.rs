//! messageId de-duplication inside a bounded time window, per source.
//!
//! Ids are remembered only after their events are durable, so a retry of a request
//! that failed is never mistaken for a duplicate. Two copies racing in at the same
//! instant may both be stored: delivery is at-least-once and keeps the messageId.
//! Keys are per source so one source cannot suppress another's events. The cache holds
//! a 128-bit XXH3 digest of `(source, messageId)` rather than the strings: a
//! fixed 16 bytes per id whatever the id's length, and cheap to hash and compare; a
//! false match needs a 128-bit collision.

use std::time::Duration;

use moka::sync::Cache;

use crate::config;

/// Recently seen `(source, messageId)` pairs.
pub struct Dedup {
    seen: Option<Cache<u128, ()>>,
}

impl Dedup {
    /// A window as configured (`window_secs = 0`: off).
    pub fn new(config: &config::Dedup) -> Self {
        let seen = (config.window_secs > 0).then(|| {
            Cache::builder()
                .max_capacity(config.max_entries)
                .time_to_live(Duration::from_secs(config.window_secs))
                .build()
        });
        Self { seen }
    }

    /// The cache key of a message.
    pub fn key(source_id: &str, message_id: &str) -> u128 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(source_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(message_id.as_bytes());
        hasher.digest128()
    }

    /// Whether `key` was stored inside the window.
    pub fn seen(&self, key: u128) -> bool {
        self.seen.as_ref().is_some_and(|c| c.contains_key(&key))
    }

    /// Remembers durably stored keys.
    pub fn remember(&self, keys: impl IntoIterator<Item = u128>) {
        if let Some(cache) = &self.seen {
            for key in keys {
                cache.insert(key, ());
            }
        }
    }
}
