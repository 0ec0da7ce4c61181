use std::time::Duration;

/// Bounded, jittered exponential backoff for optimistic-concurrency retries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total attempts of one change (first try included).
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// No new attempt starts after this much time (keeps a change well
    /// inside the Lambda timeout).
    pub max_elapsed_ms: u64,
}

impl Default for RetryPolicy {
    /// Sized for a hot account: each round one writer wins, so the delay
    /// ceiling grows (to 640 ms) until contenders spread out enough to win;
    /// a change still gives up after 40 attempts or 6 s, well inside the
    /// functions' shortest timeout (15 s, `Globals` in template.yaml).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 40,
            base_delay_ms: 5,
            max_delay_ms: 640,
            max_elapsed_ms: 6_000,
        }
    }
}

impl RetryPolicy {
    /// "Full jitter": uniform in [0, min(cap, base * 2^attempt)].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay_ms
            .saturating_mul(1u64 << attempt.min(16))
            .min(self.max_delay_ms)
            .max(1);
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded() {
        let policy = RetryPolicy::default();
        for attempt in 0..100 {
            assert!(policy.delay(attempt) <= Duration::from_millis(policy.max_delay_ms));
        }
    }
}
