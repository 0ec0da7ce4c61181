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
    /// `max_delay_ms`. Under a steady stream of newcomers it favours them
    /// (old writers wait up to the cap, newcomers retry within milliseconds),
    /// but a burst spreads out and drains.
    Exponential,
    /// Full jitter over the exponential ceiling, capped by a bound that
    /// *shrinks* as the change waits (`max_delay_ms / (1 + waited /
    /// age_step_ms)`), so writers that have lost many rounds retry sooner
    /// than newcomers that lost few. Shorter tail under a steady stream, but
    /// in a burst every writer ages together, all ceilings collapse at once
    /// and the herd conflicts until the budget ends, so it is not the default
    /// (docs/benchmarks.md, "One hot account").
    OldestFirst { age_step_ms: u64 },
    /// Binary exponential backoff counted in *rounds*, as Ethernet counts
    /// collision slots: a lost change waits a random number of its own last
    /// round's durations (read → write answer), up to `2^attempt` of them.
    /// A round is the window in which another writer can beat this one, so
    /// when the store is slow (queued requests, a busy machine) the waits
    /// stretch with it and k contenders spread over about k rounds instead
    /// of piling into a fixed millisecond range.
    Rounds,
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
            max_delay_ms: 2_560,
            max_elapsed_ms: 6_000,
            shape: BackoffShape::Rounds,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` of a change that has been
    /// trying for `waited` and whose last round took `last_round`.
    pub fn delay(&self, attempt: u32, waited: Duration, last_round: Duration) -> Duration {
        let ceiling = match self.shape {
            BackoffShape::Rounds => {
                let round = u64::try_from(last_round.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(self.base_delay_ms);
                round
                    .saturating_mul(1u64 << attempt.min(16))
                    .min(self.max_delay_ms)
            }
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
            BackoffShape::Rounds,
        ] {
            let policy = RetryPolicy {
                shape,
                ..RetryPolicy::default()
            };
            for attempt in 0..100 {
                let waited = Duration::from_millis(u64::from(attempt) * 37);
                assert!(
                    policy.delay(attempt, waited, waited)
                        <= Duration::from_millis(policy.max_delay_ms)
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
                .map(|_| policy.delay(5, Duration::from_millis(waited_ms), Duration::ZERO))
                .max()
                .unwrap_or_default()
        };
        let (young, old) = (longest(0), longest(1_000));
        assert!(young > Duration::from_millis(100), "young {young:?}");
        assert!(old <= Duration::from_millis(15), "old {old:?}");
    }

    #[test]
    fn waits_stretch_with_the_round() {
        let policy = RetryPolicy::default();
        let longest = |round_ms: u64| {
            (0..2_000)
                .map(|_| policy.delay(2, Duration::ZERO, Duration::from_millis(round_ms)))
                .max()
                .unwrap_or_default()
        };
        // Two lost rounds: up to 4 rounds of waiting, whatever a round costs.
        assert!(longest(0) <= Duration::from_millis(20));
        let slow = longest(200);
        assert!(slow > Duration::from_millis(500) && slow <= Duration::from_millis(800));
        assert!(longest(60_000) <= Duration::from_millis(policy.max_delay_ms));
    }
}
