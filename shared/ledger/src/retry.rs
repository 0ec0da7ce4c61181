use std::time::Duration;

/// Bounded, jittered backoff for optimistic-concurrency retries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total attempts of one change (first try included).
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// No new attempt starts after this much time (keeps a change well
    /// inside the Lambda timeout).
    pub max_elapsed_ms: u64,
    pub shape: BackoffShape,
}

/// How the wait before a retry is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffShape {
    /// "Full jitter" over a ceiling that doubles per attempt up to
    /// `max_delay_ms`. On a hot account this starves the oldest writers:
    /// after a few lost rounds they wait up to the cap while newcomers retry
    /// within milliseconds and win, so the tail grows (kept for comparison).
    Exponential,
    /// Full jitter over the exponential ceiling, capped by a bound that
    /// *shrinks* as the change waits (`max_delay_ms / (1 + waited /
    /// age_step_ms)`), so writers that have lost many rounds retry sooner
    /// than newcomers that lost few.
    OldestFirst { age_step_ms: u64 },
}

impl Default for RetryPolicy {
    /// Sized for a hot account: each round one writer wins, so the delay
    /// ceiling grows (to 640 ms) until contenders spread out enough to win,
    /// and shrinks again as a change ages so the oldest are not starved
    /// (`./infra/bench.sh hot`: 7 instead of 79 of 400 sustained changes out
    /// of budget, twice the throughput); a change still gives up after 40
    /// attempts or 6 s, well inside the functions' shortest timeout (15 s,
    /// `Globals` in template.yaml).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 40,
            base_delay_ms: 5,
            max_delay_ms: 640,
            max_elapsed_ms: 6_000,
            shape: BackoffShape::OldestFirst { age_step_ms: 1_000 },
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` of a change that has been
    /// trying for `waited`.
    pub fn delay(&self, attempt: u32, waited: Duration) -> Duration {
        let ceiling = match self.shape {
            BackoffShape::Exponential => self
                .base_delay_ms
                .saturating_mul(1u64 << attempt.min(16))
                .min(self.max_delay_ms),
            BackoffShape::OldestFirst { age_step_ms } => {
                let waited = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                let cap = self.max_delay_ms * age_step_ms.max(1)
                    / waited.saturating_add(age_step_ms.max(1));
                self.base_delay_ms
                    .saturating_mul(1u64 << attempt.min(16))
                    .min(cap.max(self.base_delay_ms))
            }
        }
        .max(1);
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded() {
        for shape in [
            BackoffShape::Exponential,
            BackoffShape::OldestFirst { age_step_ms: 100 },
        ] {
            let policy = RetryPolicy {
                shape,
                ..RetryPolicy::default()
            };
            for attempt in 0..100 {
                let waited = Duration::from_millis(u64::from(attempt) * 37);
                assert!(
                    policy.delay(attempt, waited) <= Duration::from_millis(policy.max_delay_ms)
                );
            }
        }
    }

    #[test]
    fn older_changes_wait_less() {
        let policy = RetryPolicy {
            max_delay_ms: 160,
            shape: BackoffShape::OldestFirst { age_step_ms: 100 },
            ..RetryPolicy::default()
        };
        let longest = |waited_ms: u64| {
            (0..2_000)
                .map(|_| policy.delay(5, Duration::from_millis(waited_ms)))
                .max()
                .unwrap_or_default()
        };
        let (young, old) = (longest(0), longest(1_000));
        assert!(young > Duration::from_millis(100), "young {young:?}");
        assert!(old <= Duration::from_millis(15), "old {old:?}");
    }
}
