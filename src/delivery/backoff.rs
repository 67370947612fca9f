//! Retry pacing: exponential back-off with full jitter, and a circuit breaker that
//! turns a run of failures into single-event probes.

use std::time::Duration;

use crate::catalog::RetryDoc;

/// Consecutive failures that open the circuit.
pub const OPEN_AFTER: u32 = 5;

/// The delay before retry number `attempt` (0-based): a random point in
/// `[base/2, base]` where `base = min(initial * 2^attempt, max)`.
pub fn delay(policy: &RetryDoc, attempt: u32) -> Duration {
    let initial = policy.initial_backoff_ms.max(1);
    let base = initial
        .saturating_mul(1u64 << attempt.min(30))
        .min(policy.max_backoff_ms.max(initial));
    // At least a millisecond: `initial_backoff_ms = 1` must not make a hot loop.
    let jittered = (base / 2 + fastrand::u64(0..=base / 2)).max(1);
    Duration::from_millis(jittered)
}

/// How long to wait before the next attempt: the back-off for `attempt`, or longer if
/// the destination asked (`Retry-After`), but never more than `max_backoff_ms` (a
/// destination answering `Retry-After: 31536000` must not stall itself for a year) and
/// never past the moment the oldest event of the batch, now `age` old, reaches
/// `max_age_secs` (it then goes to the dead-letter store).
pub fn wait(
    policy: &RetryDoc,
    attempt: u32,
    retry_after: Option<Duration>,
    age: Duration,
) -> Duration {
    let cap = Duration::from_millis(policy.max_backoff_ms.max(1));
    let asked = retry_after.unwrap_or_default().min(cap);
    let left = Duration::from_secs(policy.max_age_secs).saturating_sub(age);
    delay(policy, attempt).max(asked).min(left)
}

/// Circuit state, also exported as a gauge (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Sending normally.
    Closed,
    /// Too many failures: waiting, then probing with one event.
    Open,
    /// A probe is being sent.
    HalfOpen,
}

impl Circuit {
    /// Gauge value.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// Counts consecutive failures.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
}

impl Breaker {
    /// Records a success: the circuit closes.
    pub fn success(&mut self) {
        self.failures = 0;
    }

    /// Records a failure.
    pub fn failure(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The state for the next attempt.
    pub fn state(&self) -> Circuit {
        if self.failures >= OPEN_AFTER {
            Circuit::Open
        } else {
            Circuit::Closed
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_bounds(initial in 1u64..5_000, extra in 0u64..100_000, attempt in 0u32..64) {
            let policy = RetryDoc { initial_backoff_ms: initial, max_backoff_ms: initial + extra, max_age_secs: 1, ..RetryDoc::default() };
            let d = delay(&policy, attempt).as_millis() as u64;
            let base = (initial.saturating_mul(1 << attempt.min(30))).min(initial + extra);
            prop_assert!(d >= base / 2 && d <= base, "{d} not in [{}, {base}]", base / 2);
        }
    }

    proptest::proptest! {
        #[test]
        fn waits_are_capped_by_max_backoff_and_max_age(
            asked in proptest::option::of(0u64..40_000_000),
            age in 0u64..200_000,
            attempt in 0u32..40,
        ) {
            let policy = RetryDoc { max_backoff_ms: 60_000, max_age_secs: 86_400, ..RetryDoc::default() };
            let d = wait(&policy, attempt, asked.map(Duration::from_secs), Duration::from_secs(age));
            prop_assert!(d <= Duration::from_millis(60_000));
            prop_assert!(d <= Duration::from_secs(86_400u64.saturating_sub(age)));
            if let Some(asked) = asked.filter(|&a| a <= 60 && age + 60 < 86_400) {
                prop_assert!(d >= Duration::from_secs(asked), "Retry-After below the cap is honoured");
            }
        }
    }

    #[test]
    fn opens_after_a_run_of_failures() {
        let mut b = Breaker::default();
        for _ in 0..OPEN_AFTER - 1 {
            b.failure();
        }
        assert_eq!(b.state(), Circuit::Closed);
        b.failure();
        assert_eq!(b.state(), Circuit::Open);
        b.success();
        assert_eq!(b.state(), Circuit::Closed);
    }
}
