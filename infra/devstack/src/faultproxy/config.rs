//! What the proxy injects: [`Fault`]s, [`FaultRule`]s, the [`FaultConfig`]
//! (also built from `devstack faultproxy` flags) and the [`ProxyStats`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the proxy does to a request a rule picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `TransactionCanceledException` with a `TransactionConflict` reason;
    /// only for `TransactWriteItems` / `TransactGetItems` (ignored otherwise).
    Conflict,
    /// `ThrottlingException` (400).
    Throttling,
    /// `ProvisionedThroughputExceededException` (400).
    ProvisionedThroughput,
    /// `InternalServerError` (500), without forwarding.
    InternalError,
    /// Forward, then reset the connection without answering.
    DropAfterForward,
    /// Forward, then answer 500 `InternalServerError` whatever happened.
    ErrorAfterForward,
    /// Delay the answer by `ms`.
    Latency { ms: u64 },
}

impl Fault {
    /// The name used in [`ProxyStats::faults`].
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Conflict => "conflict",
            Fault::Throttling => "throttling",
            Fault::ProvisionedThroughput => "provisioned_throughput",
            Fault::InternalError => "internal_error",
            Fault::DropAfterForward => "drop_after_forward",
            Fault::ErrorAfterForward => "error_after_forward",
            Fault::Latency { .. } => "latency",
        }
    }

    fn applies_to(&self, operation: &str) -> bool {
        match self {
            Fault::Conflict => matches!(operation, "TransactWriteItems" | "TransactGetItems"),
            _ => true,
        }
    }
}

/// One rule: `fault` for a share `rate` of the requests of `operation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// An operation name (`TransactWriteItems`, `GetItem`, ...) or `*`.
    pub operation: String,
    pub fault: Fault,
    /// Share of the matching requests, `0.0..=1.0`.
    pub rate: f64,
    /// Let the first `skip` matching requests through untouched.
    #[serde(default)]
    pub skip: u64,
    /// Fire at most this many times.
    #[serde(default)]
    pub max: Option<u64>,
}

impl FaultRule {
    pub(super) fn matches(&self, operation: &str) -> bool {
        (self.operation == "*" || self.operation == operation) && self.fault.applies_to(operation)
    }
}

/// The proxy's behaviour: a seed and the rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    /// No faults: a transparent proxy.
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    pub fn seeded(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            rules: Vec::new(),
        }
    }

    /// Adds `fault` for a share `rate` of the requests of `operation` (or `*`).
    pub fn with(self, operation: &str, fault: Fault, rate: f64) -> FaultConfig {
        self.with_rule(FaultRule {
            operation: operation.to_owned(),
            fault,
            rate,
            skip: 0,
            max: None,
        })
    }

    pub fn with_rule(mut self, rule: FaultRule) -> FaultConfig {
        self.rules.push(rule);
        self
    }

    /// Applies one command-line flag (`name` with its leading `--`).
    /// `Ok(false)`: not a fault flag (the caller handles it or refuses it).
    pub fn apply_flag(&mut self, name: &str, value: &str) -> Result<bool, String> {
        let (fault, default_ops) = match name {
            "--seed" => {
                self.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: not a number: {value:?}"))?;
                return Ok(true);
            }
            "--conflict" => (Fault::Conflict, "TransactWriteItems"),
            "--throttle" => (Fault::Throttling, "*"),
            "--throughput" => (Fault::ProvisionedThroughput, "*"),
            "--internal-error" => (Fault::InternalError, "*"),
            "--drop-ack" => (Fault::DropAfterForward, "TransactWriteItems"),
            "--error-after-write" => (Fault::ErrorAfterForward, "TransactWriteItems"),
            "--latency" => (Fault::Latency { ms: 0 }, "*"),
            _ => return Ok(false),
        };
        let (spec, ops) = match value.split_once('@') {
            Some((spec, ops)) => (spec, ops),
            None => (value, default_ops),
        };
        let parse_rate = |text: &str| -> Result<f64, String> {
            match text.trim().parse::<f64>() {
                Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
                _ => Err(format!("{name}: not a rate in 0..=1: {text:?}")),
            }
        };
        let (fault, rate) = match fault {
            Fault::Latency { .. } => {
                let (ms, rate) = match spec.split_once(':') {
                    Some((ms, rate)) => (ms, parse_rate(rate)?),
                    None => (spec, 1.0),
                };
                let ms = ms
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{name}: not milliseconds: {ms:?}"))?;
                (Fault::Latency { ms }, rate)
            }
            other => (other, parse_rate(spec)?),
        };
        for op in ops.split(',').map(str::trim).filter(|op| !op.is_empty()) {
            self.rules.push(FaultRule {
                operation: op.to_owned(),
                fault,
                rate,
                skip: 0,
                max: None,
            });
        }
        Ok(true)
    }
}

/// What the proxy did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProxyStats {
    /// Requests received per operation (every SDK attempt is one).
    pub requests: BTreeMap<String, u64>,
    /// Requests passed to the upstream per operation (including those whose
    /// answer was then dropped or replaced).
    pub forwarded: BTreeMap<String, u64>,
    /// Faults injected: [`Fault::name`] → operation → count.
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests the upstream answered 2xx but whose answer the client never
    /// saw (dropped, or replaced by a 500): writes that happened unacknowledged.
    pub unacknowledged: BTreeMap<String, u64>,
    /// Requests for which the upstream could not be reached (answered 502).
    pub upstream_failures: u64,
    /// `TransactWriteItems` refused with `IdempotentParameterMismatchException`:
    /// a `ClientRequestToken` reused with different items (as DynamoDB does).
    pub token_mismatches: u64,
    /// Calls refused by local IAM (`AccessDeniedException`), by
    /// `Function action` (e.g. `BalanceFunction dynamodb:PutItem`).
    pub access_denied: BTreeMap<String, u64>,
}

impl ProxyStats {
    pub fn requests(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }

    pub fn forwarded(&self, operation: &str) -> u64 {
        self.forwarded.get(operation).copied().unwrap_or(0)
    }

    /// Faults of one kind ([`Fault::name`]) injected into one operation.
    pub fn fault(&self, fault: &str, operation: &str) -> u64 {
        self.faults
            .get(fault)
            .and_then(|ops| ops.get(operation))
            .copied()
            .unwrap_or(0)
    }

    /// Faults of one kind over all operations.
    pub fn fault_total(&self, fault: &str) -> u64 {
        self.faults
            .get(fault)
            .map(|ops| ops.values().sum())
            .unwrap_or(0)
    }

    pub fn unacknowledged(&self, operation: &str) -> u64 {
        self.unacknowledged.get(operation).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_rules() {
        let mut config = FaultConfig::none();
        for (name, value) in [
            ("--seed", "9"),
            ("--conflict", "0.3"),
            ("--throttle", "0.05@GetItem,TransactWriteItems"),
            ("--latency", "20:0.5"),
        ] {
            assert_eq!(config.apply_flag(name, value), Ok(true));
        }
        assert_eq!(config.apply_flag("--port", "1"), Ok(false));
        assert!(config.apply_flag("--drop-ack", "1.5").is_err());
        assert_eq!(config.seed, 9);
        assert_eq!(config.rules.len(), 4);
        assert_eq!(config.rules[0].operation, "TransactWriteItems");
        assert_eq!(config.rules[2].operation, "TransactWriteItems");
        assert_eq!(config.rules[3].fault, Fault::Latency { ms: 20 });
        assert_eq!(config.rules[3].rate, 0.5);
    }
}
