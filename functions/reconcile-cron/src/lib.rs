//! `reconcile-cron`: invoked daily by an EventBridge schedule (or by hand).
//! The event's `time` is the job's clock; the window is the
//! `RECONCILE_WINDOW_DAYS` (default 3) days before it, or `detail.windowDays`
//! (1–31) for a manual run. Compares PayPal's record of the window with the
//! orders and the ledger, heals through the exactly-once paths, records
//! mismatches (see `billing::reconcile`), and returns the run's summary.
//!
//! The summary is also logged and emitted as CloudWatch metrics (embedded
//! metric format on stdout: `SkyPanelBilling/ReconciliationMismatches`,
//! `…Healed`, `…Errors`); the template's alarm watches the mismatches.
//!
//! A refused or failed run is a Lambda error whose `errorType` names the
//! problem: `ClockSkew`, `InvalidEvent`, `PayPalUnavailable`,
//! `ReconciliationFailed` (EventBridge retries it, then the dead-letter queue).

use billing::reconcile::{self, ReconcileOptions, RunSummary};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use ledger::Ledger;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use tokio::time::Instant;

/// Used when the invocation carries no deadline (tests, local calls).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(270);

pub struct Deps {
    pub ledger: Ledger,
    pub options: ReconcileOptions,
    /// No heal is started this close to the Lambda deadline.
    pub stop_margin: Duration,
    /// An event `time` further than this ahead of the wall clock is refused
    /// (`None`: not checked — the local stack, to run "as of" any time).
    pub max_clock_skew: Option<time::Duration>,
    secrets: std::sync::Arc<billing_config::Secrets>,
    paypal: tokio::sync::OnceCell<paypal::PayPalClient>,
    virtfusion: tokio::sync::OnceCell<virtfusion::VirtFusionClient>,
}

impl Deps {
    pub async fn from_env() -> Deps {
        let sdk = billing_config::load_aws_config().await;
        let mut deps = Deps::new(Ledger::new(
            billing_config::dynamo_client(&sdk),
            billing_config::table_name(),
        ));
        if let Some(days) = billing_config::env_opt("RECONCILE_WINDOW_DAYS")
            .and_then(|d| d.trim().parse::<i64>().ok())
            .filter(|d| (1..=31).contains(d))
        {
            deps.options.window = time::Duration::days(days);
        }
        deps.max_clock_skew = match billing_config::env_opt("RECONCILE_MAX_CLOCK_SKEW_SECONDS") {
            Some(v) if v.trim() == "off" => None,
            Some(v) => Some(time::Duration::seconds(
                v.trim().parse::<i64>().unwrap_or(900).max(0),
            )),
            None => Some(time::Duration::minutes(15)),
        };
        deps
    }

    /// Over `ledger`, with the low-balance hook installed (as every
    /// function's ledger has it): a debit reconciliation applies that takes
    /// a balance below `LOW_BALANCE_THRESHOLD_USD` commits its
    /// `credits.balance_low` event.
    pub fn new(ledger: Ledger) -> Deps {
        Deps {
            ledger: billing::events::watch_low_balance(
                ledger,
                billing::events::low_balance_threshold(),
            ),
            options: ReconcileOptions::default(),
            stop_margin: Duration::from_secs(20),
            max_clock_skew: Some(time::Duration::minutes(15)),
            secrets: std::sync::Arc::new(billing_config::Secrets::new()),
            paypal: tokio::sync::OnceCell::new(),
            virtfusion: tokio::sync::OnceCell::new(),
        }
    }

    /// With given clients (tests, the bench).
    pub fn with_clients(
        mut self,
        paypal: paypal::PayPalClient,
        virtfusion: Option<virtfusion::VirtFusionClient>,
    ) -> Deps {
        self.paypal = tokio::sync::OnceCell::new_with(Some(paypal));
        if let Some(client) = virtfusion {
            self.virtfusion = tokio::sync::OnceCell::new_with(Some(client));
        }
        self
    }

    async fn paypal(&self) -> Result<&paypal::PayPalClient, Diagnostic> {
        self.paypal
            .get_or_try_init(|| paypal::from_env(&self.secrets))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "PayPal client not configured");
                failure("ReconciliationFailed", "PayPal client not configured")
            })
    }

    /// Only token refunds need it (to take tokens back); absent is not fatal.
    async fn virtfusion(&self) -> Option<&virtfusion::VirtFusionClient> {
        self.virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.secrets))
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "VirtFusion client not configured"))
            .ok()
    }
}

fn failure(kind: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        error_type: kind.to_owned(),
        error_message: message.into(),
    }
}

/// The job's clock: the event's `time` (RFC 3339); none (`{}`) → the wall
/// clock. Refused when further than `max_skew` ahead of the wall clock.
pub fn job_clock(
    event: &Value,
    wall: OffsetDateTime,
    max_skew: Option<time::Duration>,
) -> Result<OffsetDateTime, Diagnostic> {
    let now = match event.get("time") {
        None | Some(Value::Null) => wall,
        Some(Value::String(text)) => billing::dns::dates::parse_time(text).ok_or_else(|| {
            failure(
                "InvalidEvent",
                format!("event time {text:?} is not RFC 3339"),
            )
        })?,
        Some(_) => return Err(failure("InvalidEvent", "event time must be a string")),
    };
    if let Some(skew) = max_skew
        && now > wall + skew
    {
        return Err(failure(
            "ClockSkew",
            format!("event time {now} is ahead of the clock"),
        ));
    }
    Ok(billing::dns::dates::to_millis(now))
}

/// `detail.windowDays` (1–31) of a manual run, if given.
pub fn window_override(event: &Value) -> Result<Option<time::Duration>, Diagnostic> {
    match event.get("detail").and_then(|d| d.get("windowDays")) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(days) if (1..=31).contains(&days) => Ok(Some(time::Duration::days(days))),
            _ => Err(failure(
                "InvalidEvent",
                "detail.windowDays must be a whole number from 1 to 31",
            )),
        },
    }
}

fn invocation_end(context: &Context) -> Option<Instant> {
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    let remaining = context.deadline.checked_sub(now_ms).filter(|ms| *ms > 0)?;
    Some(Instant::now() + Duration::from_millis(remaining))
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    let now = job_clock(&payload, OffsetDateTime::now_utc(), deps.max_clock_skew)?;
    let mut options = deps.options;
    if let Some(window) = window_override(&payload)? {
        options.window = window;
    }
    let end = invocation_end(&context).unwrap_or_else(|| Instant::now() + DEFAULT_BUDGET);
    let deadline = end
        .checked_sub(deps.stop_margin)
        .unwrap_or_else(Instant::now)
        .into_std();
    let paypal = deps.paypal().await?;
    let virtfusion = deps.virtfusion().await;
    let summary = reconcile::run(&deps.ledger, paypal, virtfusion, now, options, deadline)
        .await
        .map_err(|error| {
            tracing::error!(%error, "reconciliation failed");
            match error {
                billing::BillingError::Upstream { .. } => {
                    failure("PayPalUnavailable", "PayPal could not be read; retry later")
                }
                _ => failure(
                    "ReconciliationFailed",
                    "reconciliation failed; see the logs",
                ),
            }
        })?;
    log_summary(&summary);
    serde_json::to_value(&summary).map_err(|_| failure("ReconciliationFailed", "summary"))
}

fn log_summary(summary: &RunSummary) {
    tracing::info!(
        run_id = %summary.run_id,
        window_start = %summary.window.start,
        window_end = %summary.window.end,
        checked = summary.checked,
        healed = summary.healed,
        mismatches = summary.mismatches,
        new_mismatches = summary.new_mismatches,
        errors = summary.errors,
        pages = summary.pages,
        dynamo_items_read = summary.dynamo_items_read,
        complete = summary.complete,
        elapsed_ms = summary.elapsed_ms,
        "reconciliation done"
    );
    println!("{}", metrics_line(summary, SystemTime::now()));
}

/// The run's numbers in CloudWatch's embedded metric format (one stdout line).
pub fn metrics_line(summary: &RunSummary, at: SystemTime) -> Value {
    use billing_config::metrics::{Metric, emf_line};
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    emf_line(
        &[
            Metric::count("ReconciliationMismatches", count(summary.mismatches)),
            Metric::count("ReconciliationHealed", count(summary.healed)),
            Metric::count("ReconciliationErrors", count(summary.errors)),
            Metric::count("ReconciliationChecked", count(summary.checked)),
            // New this run: pages even while older mismatches are still open.
            Metric::count("ReconciliationNewMismatches", count(summary.new_mismatches)),
            // 1 per complete run: a day without one (no run, a failed or a
            // cut-short run) pages (ReconciliationRunMissingAlarm).
            Metric::count("ReconciliationRunsComplete", i64::from(summary.complete)),
        ],
        &[("runId", json!(summary.run_id))],
        at,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const WALL: OffsetDateTime = datetime!(2025-11-25 12:00:30 UTC);

    #[test]
    fn the_event_time_is_the_clock_within_the_skew() {
        let skew = Some(time::Duration::minutes(15));
        let event = json!({"detail-type": "Scheduled Event", "time": "2025-11-25T12:00:00Z"});
        assert_eq!(
            job_clock(&event, WALL, skew).unwrap(),
            datetime!(2025-11-25 12:00 UTC)
        );
        assert_eq!(job_clock(&json!({}), WALL, skew).unwrap(), WALL);
        let future = json!({"time": "2025-11-26T12:00:00Z"});
        assert_eq!(
            job_clock(&future, WALL, skew).unwrap_err().error_type,
            "ClockSkew"
        );
        assert!(job_clock(&future, WALL, None).is_ok(), "local: no limit");
        assert_eq!(
            job_clock(&json!({"time": 1}), WALL, skew)
                .unwrap_err()
                .error_type,
            "InvalidEvent"
        );
    }

    #[test]
    fn a_manual_run_may_choose_its_window() {
        assert_eq!(window_override(&json!({})).unwrap(), None);
        assert_eq!(
            window_override(&json!({"detail": {"windowDays": 7}})).unwrap(),
            Some(time::Duration::days(7))
        );
        assert!(window_override(&json!({"detail": {"windowDays": 90}})).is_err());
    }

    #[test]
    fn metrics_are_embedded_metric_format() {
        let summary = RunSummary {
            mismatches: 2,
            new_mismatches: 1,
            complete: true,
            ..RunSummary::default()
        };
        let line = metrics_line(&summary, UNIX_EPOCH + Duration::from_secs(1));
        assert_eq!(line["ReconciliationMismatches"], 2);
        assert_eq!(line["_aws"]["Timestamp"], 1000);
        // Kept whatever the function's log level (a line without one is INFO to Lambda).
        assert_eq!(line["level"], billing_config::metrics::METRIC_LEVEL);
        assert_eq!(line["ReconciliationNewMismatches"], 1);
        assert_eq!(line["ReconciliationRunsComplete"], 1);
        let cut_short = RunSummary::default();
        let line = metrics_line(&cut_short, UNIX_EPOCH);
        assert_eq!(line["ReconciliationRunsComplete"], 0);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ReconciliationMismatches"
        );
    }
}
