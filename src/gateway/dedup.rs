//! messageId de-duplication inside a bounded time window, per source.
//!
//! Ids are remembered only after their events are durable, so a retry of a request
//! that failed is never mistaken for a duplicate. Two copies racing in at the same
//! instant may both be stored: delivery is at-least-once and keeps the messageId.
//! Keys are per source so one source cannot suppress another's events.

use std::time::Duration;

use moka::sync::Cache;

use crate::config;

/// Recently seen `(source, messageId)` pairs.
pub struct Dedup {
    seen: Option<Cache<String, ()>>,
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
    pub fn key(source_id: &str, message_id: &str) -> String {
        let mut key = String::with_capacity(source_id.len() + message_id.len() + 1);
        key.push_str(source_id);
        key.push('\0');
        key.push_str(message_id);
        key
    }

    /// Whether `key` was stored inside the window.
    pub fn seen(&self, key: &str) -> bool {
        self.seen.as_ref().is_some_and(|c| c.contains_key(key))
    }

    /// Remembers durably stored keys.
    pub fn remember(&self, keys: impl IntoIterator<Item = String>) {
        if let Some(cache) = &self.seen {
            for key in keys {
                cache.insert(key, ());
            }
        }
    }
}
