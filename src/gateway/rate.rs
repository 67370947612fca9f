//! Per-source request rate limits (GCRA via `governor`).
//!
//! Limiters are created on a source's first request and replaced when the catalog
//! changes its quota; sources without a limit cost one map lookup.

use std::num::NonZeroU32;
use std::sync::Arc;

use dashmap::DashMap;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::catalog::{RateLimit, Source};

/// Limiters by source id.
#[derive(Default)]
pub struct Limiters {
    by_source: DashMap<String, (RateLimit, Arc<DefaultDirectRateLimiter>)>,
    clock: DefaultClock,
}

impl Limiters {
    /// `Ok` if `source` may send one more request now, else the whole seconds to wait (≥ 1).
    pub fn check(&self, source: &Source) -> Result<(), u64> {
        let Some(limit) = source.rate_limit else {
            return Ok(());
        };
        let limiter = self.limiter(&source.id, limit);
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }

    fn limiter(&self, id: &str, limit: RateLimit) -> Arc<DefaultDirectRateLimiter> {
        if let Some(entry) = self.by_source.get(id)
            && entry.0 == limit
        {
            return Arc::clone(&entry.1);
        }
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
        let limiter = Arc::new(RateLimiter::direct(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        self.by_source
            .insert(id.to_owned(), (limit, Arc::clone(&limiter)));
        limiter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_with_a_wait() {
        let limiters = Limiters::default();
        let source = Source {
            id: "s".into(),
            name: "s".into(),
            workspace: None,
            enabled: true,
            rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 3,
            }),
            protocols: None,
            quotas: Vec::new(),
            without_consent: Default::default(),
            pii: None,
        };
        for _ in 0..3 {
            assert_eq!(limiters.check(&source), Ok(()));
        }
        assert_eq!(limiters.check(&source), Err(1));
        let unlimited = Source {
            rate_limit: None,
            ..source
        };
        assert!((0..100).all(|_| limiters.check(&unlimited).is_ok()));
    }
}
