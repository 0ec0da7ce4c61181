//! The seeded draw: which fault (and latency) a request of an operation gets.

use super::{Fault, FaultConfig, ProxyStats};
use std::collections::HashMap;

/// SplitMix64: small, seedable, good enough to pick requests.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a, to give each operation its own stream from one seed.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Default)]
pub(super) struct Decision {
    pub(super) fault: Option<Fault>,
    pub(super) latency_ms: u64,
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) config: FaultConfig,
    rngs: HashMap<String, SplitMix64>,
    /// Per rule: matching requests seen, times fired.
    seen: Vec<u64>,
    fired: Vec<u64>,
    pub(super) stats: ProxyStats,
    pub(super) tokens: super::tokens::TokenBook,
}

impl Inner {
    pub(super) fn set_config(&mut self, config: FaultConfig) {
        self.seen = vec![0; config.rules.len()];
        self.fired = vec![0; config.rules.len()];
        self.rngs.clear();
        self.config = config;
    }

    pub(super) fn decide(&mut self, operation: &str) -> Decision {
        let seed = self.config.seed;
        let rng = self
            .rngs
            .entry(operation.to_owned())
            .or_insert_with(|| SplitMix64(seed ^ fnv1a(operation)));
        let draw = rng.next_f64();
        let mut decision = Decision::default();
        let mut edge = 0.0;
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !rule.matches(operation) {
                continue;
            }
            self.seen[i] += 1;
            let eligible =
                self.seen[i] > rule.skip && rule.max.is_none_or(|max| self.fired[i] < max);
            let rate = if rule.rate.is_finite() {
                rule.rate.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let fires = match rule.fault {
                Fault::Latency { ms } => {
                    let fires = rng.next_f64() < rate && eligible;
                    if fires {
                        decision.latency_ms = decision.latency_ms.saturating_add(ms);
                    }
                    fires
                }
                // A rule still skipping, or spent, takes no share of the draw.
                fault if eligible => {
                    let lower = edge;
                    edge += rate;
                    let fires = decision.fault.is_none() && draw >= lower && draw < edge;
                    if fires {
                        decision.fault = Some(fault);
                    }
                    fires
                }
                _ => false,
            };
            if fires {
                self.fired[i] += 1;
                *self
                    .stats
                    .faults
                    .entry(rule.fault.name().to_owned())
                    .or_default()
                    .entry(operation.to_owned())
                    .or_default() += 1;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faultproxy::FaultRule;

    #[test]
    fn shares_of_one_draw_do_not_overlap_and_follow_the_seed() {
        let config = FaultConfig::seeded(7)
            .with("TransactWriteItems", Fault::Conflict, 0.3)
            .with("TransactWriteItems", Fault::DropAfterForward, 0.1)
            .with("GetItem", Fault::Conflict, 1.0);
        let run = || {
            let mut inner = Inner::default();
            inner.set_config(config.clone());
            let fates: Vec<Option<Fault>> = (0..10_000)
                .map(|_| inner.decide("TransactWriteItems").fault)
                .collect();
            assert!(
                inner.decide("GetItem").fault.is_none(),
                "conflicts only for transactions"
            );
            fates
        };
        let fates = run();
        assert_eq!(fates, run(), "same seed, same fates");
        let count = |f: Fault| fates.iter().filter(|x| **x == Some(f)).count();
        assert!(
            (2800..3200).contains(&count(Fault::Conflict)),
            "{}",
            count(Fault::Conflict)
        );
        assert!(
            (850..1150).contains(&count(Fault::DropAfterForward)),
            "{}",
            count(Fault::DropAfterForward)
        );
    }

    #[test]
    fn skip_and_max_bound_a_rule() {
        let mut inner = Inner::default();
        inner.set_config(FaultConfig::seeded(1).with_rule(FaultRule {
            operation: "*".into(),
            fault: Fault::Throttling,
            rate: 1.0,
            skip: 2,
            max: Some(3),
        }));
        let fates: Vec<bool> = (0..8)
            .map(|_| inner.decide("GetItem").fault.is_some())
            .collect();
        assert_eq!(fates, [false, false, true, true, true, false, false, false]);
        assert_eq!(inner.stats.faults["throttling"]["GetItem"], 3);
    }

    #[test]
    fn spent_rules_leave_the_draw_to_the_next() {
        let rule = |fault, skip| FaultRule {
            operation: "TransactWriteItems".into(),
            fault,
            rate: 1.0,
            skip,
            max: Some(1),
        };
        let mut inner = Inner::default();
        inner.set_config(
            FaultConfig::seeded(3)
                .with_rule(rule(Fault::DropAfterForward, 0))
                .with_rule(rule(Fault::Conflict, 1)),
        );
        let fates: Vec<Option<Fault>> = (0..3)
            .map(|_| inner.decide("TransactWriteItems").fault)
            .collect();
        assert_eq!(
            fates,
            [Some(Fault::DropAfterForward), Some(Fault::Conflict), None]
        );
    }
}
