//! Throttling failed write-key lookups per client address, so the Tracking API is no
//! oracle for guessing keys (a single connection could otherwise try ~11,000 a second).
//!
//! Memory is bounded whatever the number of addresses: a fixed table of counters
//! indexed by a hash of the address; addresses that share a slot share its budget.
//! Each slot counts failures in the current one-minute window (window number and count
//! packed into one atomic). Successful lookups cost nothing and count nothing.

use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Slots in the table (a power of two).
const SLOTS: usize = 4096;
/// Length of a counting window, seconds.
pub const WINDOW_SECS: u64 = 60;

/// Failed key lookups per client address and window.
pub struct FailedKeys {
    slots: Box<[AtomicU64]>,
    hasher: std::collections::hash_map::RandomState,
    /// Failures an address may have per window; 0 turns throttling off.
    limit: u32,
}

impl FailedKeys {
    /// A table allowing `limit` failures per address and minute.
    pub fn new(limit: u32) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            limit,
        }
    }

    fn slot(&self, ip: IpAddr) -> &AtomicU64 {
        let hash = self.hasher.hash_one(ip.to_canonical());
        &self.slots[(hash as usize) & (SLOTS - 1)]
    }

    fn window() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / WINDOW_SECS)
    }

    /// `Err(seconds to wait)` when `ip` has used up its failures in this window.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Self::window();
        let packed = self.slot(ip).load(Ordering::Relaxed);
        if packed >> 32 == now & 0xffff_ffff && (packed & 0xffff_ffff) as u32 >= self.limit {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return Err((WINDOW_SECS - secs % WINDOW_SECS).max(1));
        }
        Ok(())
    }

    /// Counts one failed lookup from `ip`.
    pub fn fail(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let now = Self::window() & 0xffff_ffff;
        let _ = self
            .slot(ip)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                let count = if packed >> 32 == now {
                    (packed & 0xffff_ffff)
                        .saturating_add(1)
                        .min(u32::MAX.into())
                } else {
                    1
                };
                Some(now << 32 | count)
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_stopped_after_its_failures_and_others_are_not() {
        let keys = FailedKeys::new(3);
        let guesser: IpAddr = "203.0.113.9".parse().expect("ip");
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().expect("ip");
        for _ in 0..3 {
            assert!(keys.check(guesser).is_ok());
            keys.fail(guesser);
        }
        assert!(keys.check(guesser).is_err());
        assert!(
            keys.check(mapped).is_err(),
            "the same address written as IPv6"
        );
        let other = (0..64u8)
            .map(|n| IpAddr::from([198, 51, 100, n]))
            .filter(|ip| keys.check(*ip).is_ok())
            .count();
        assert!(other >= 63, "at most a shared slot is affected");
        assert!(FailedKeys::new(0).check(guesser).is_ok());
    }
}
