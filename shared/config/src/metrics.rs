//! Business metrics in CloudWatch's **embedded metric format** (EMF): one
//! JSON line on stdout per emission, which CloudWatch Logs turns into
//! metrics of the namespace [`NAMESPACE`] (no metric filter, no parsing of
//! log messages).
//!
//! The line is written directly to stdout, not through `tracing`, so no
//! `RUST_LOG` / `AWS_LAMBDA_LOG_LEVEL` directive removes it; and it carries
//! `"level": "FATAL"`, the one level Lambda's log-level filtering
//! (`ApplicationLogLevel`, which treats a line without a level as INFO) never
//! drops. The template's alarm on ERROR lines matches `ERROR` only, so a
//! metric line is never counted as an error.

use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// The namespace of every business metric (the template's alarms read it).
pub const NAMESPACE: &str = "SkyPanelBilling";

/// The level on metric lines: kept by every log-level setting.
pub const METRIC_LEVEL: &str = "FATAL";

/// One metric of a line: its name, value and CloudWatch unit (`Count`, `None`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: i64,
    pub unit: &'a str,
}

impl<'a> Metric<'a> {
    pub fn count(name: &'a str, value: i64) -> Metric<'a> {
        Metric {
            name,
            value,
            unit: "Count",
        }
    }
}

/// The EMF line of `metrics` (no dimensions: the alarms read the metrics
/// whole), with `properties` (searchable, not metrics) beside them.
pub fn emf_line(metrics: &[Metric<'_>], properties: &[(&str, Value)], at: SystemTime) -> Value {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut line = Map::new();
    line.insert("level".into(), Value::String(METRIC_LEVEL.into()));
    line.insert(
        "timestamp".into(),
        Value::String(
            aws_smithy_types::DateTime::from(at)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap_or_default(),
        ),
    );
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": metrics
                    .iter()
                    .map(|m| json!({"Name": m.name, "Unit": m.unit}))
                    .collect::<Vec<_>>(),
            }]
        }),
    );
    for m in metrics {
        line.insert(m.name.into(), Value::from(m.value));
    }
    for (name, value) in properties {
        line.entry(*name).or_insert_with(|| value.clone());
    }
    Value::Object(line)
}

/// Writes the EMF line of `metrics` to stdout now.
pub fn emit(metrics: &[Metric<'_>], properties: &[(&str, Value)]) {
    println!("{}", emf_line(metrics, properties, SystemTime::now()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_metric_line_is_emf_at_a_level_no_filter_drops() {
        let at = UNIX_EPOCH + Duration::from_millis(1_765_000_000_123);
        let line = emf_line(
            &[Metric::count("NeedsReview", 1)],
            &[("detailType", json!("tokens.delivery_needs_review"))],
            at,
        );
        assert_eq!(line["level"], "FATAL");
        assert_eq!(line["timestamp"], "2025-12-06T05:46:40.123Z");
        assert_eq!(line["_aws"]["Timestamp"], 1_765_000_000_123u64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([[]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "NeedsReview", "Unit": "Count"}])
        );
        assert_eq!(line["NeedsReview"], 1);
        assert_eq!(line["detailType"], "tokens.delivery_needs_review");
        // Every log-level setting keeps it.
        for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"] {
            assert!(crate::logging::lambda_keeps(level, METRIC_LEVEL), "{level}");
        }
    }
}
