//! What a destination still has to deliver from the local log, kept where a scrape can
//! read it at any moment: its reading records where its unsettled events start and when the oldest of
//! them arrived; the lag gauges are computed from that and the log's end at every scrape,
//! so they keep moving while the worker sleeps in back-off.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

/// A destination's backlog, shared by its worker (writer) and the scrape (reader).
#[derive(Debug, Default)]
pub struct Backlog {
    /// The log offset of the first event not yet settled (delivered, dead-lettered or
    /// skipped).
    from: AtomicU64,
    /// When the oldest waiting event was received, Unix ms; 0 while nothing waits (or
    /// the worker has not read it yet).
    oldest_ms: AtomicI64,
}

impl Backlog {
    /// The worker holds events from `from` on, the oldest of them received at
    /// `received_at` (when it carries one).
    pub fn waiting(&self, from: u64, received_at: Option<DateTime<Utc>>) {
        self.from.store(from, Ordering::Relaxed);
        let ms = received_at.map_or(0, |at| at.timestamp_millis().max(1));
        self.oldest_ms.store(ms, Ordering::Relaxed);
    }

    /// Events before `from` are settled; the oldest waiting one stays as it was.
    pub fn advance(&self, from: u64) {
        self.from.store(from, Ordering::Relaxed);
    }

    /// Everything before `upto` is settled and nothing read is waiting.
    pub fn settled(&self, upto: u64) {
        self.waiting(upto, None);
    }

    /// The lag at `now` with the log ending at `next_offset`: events from the first
    /// unsettled one to the end, and the age in seconds of the oldest waiting event.
    pub fn lag(&self, next_offset: u64, now: DateTime<Utc>) -> (u64, f64) {
        let behind = next_offset.saturating_sub(self.from.load(Ordering::Relaxed));
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let age_ms = if behind == 0 || oldest == 0 {
            0
        } else {
            (now.timestamp_millis() - oldest).max(0)
        };
        (behind, age_ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_grows_with_the_clock_and_the_count_with_the_log() {
        let backlog = Backlog::default();
        let received = Utc::now();
        backlog.waiting(10, Some(received));
        let later = received + chrono::Duration::milliseconds(2_500);
        assert_eq!(backlog.lag(13, later), (3, 2.5));
        // Nothing settled, more appended, the clock moved: both grow without the worker.
        let later = later + chrono::Duration::seconds(30);
        assert_eq!(backlog.lag(20, later), (10, 32.5));
        backlog.settled(20);
        assert_eq!(backlog.lag(20, later), (0, 0.0));
        assert_eq!(
            backlog.lag(22, later).1,
            0.0,
            "appended, not read yet: no age known"
        );
    }
}
