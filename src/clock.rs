//! The control plane's clock: the system's, or in tests one moved forward by hand, so
//! behaviour that depends on time (elevation windows, expiries) is tested without sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time, possibly moved ahead by a test.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// How far ahead of the system clock this one is (ms); `None`: the system's.
    ahead_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// A clock a test moves with [`Clock::advance`] (copies share it).
    pub fn adjustable() -> Self {
        Self {
            ahead_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves an adjustable clock (and its copies) forward; the system's does not move.
    pub fn advance(&self, by: TimeDelta) {
        if let Some(ahead) = &self.ahead_ms {
            ahead.fetch_add(by.num_milliseconds(), Ordering::Relaxed);
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let ahead = self
            .ahead_ms
            .as_ref()
            .map_or(0, |a| a.load(Ordering::Relaxed));
        Utc::now() + TimeDelta::milliseconds(ahead)
    }
}

/// Every clock compares equal: configurations differ by their settings, not their clocks.
impl PartialEq for Clock {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_move_together_and_the_system_clock_does_not_move() {
        let clock = Clock::adjustable();
        let copy = clock.clone();
        clock.advance(TimeDelta::hours(9));
        assert!(copy.now() - Utc::now() > TimeDelta::hours(8));
        let system = Clock::default();
        system.advance(TimeDelta::hours(9));
        assert!(system.now() - Utc::now() < TimeDelta::minutes(1));
    }
}
