//! `renewal-cron`: invoked by an EventBridge schedule. The event's `time` is
//! the job's clock ("now"). Renews due DNS subscriptions (see
//! `billing::dns::renewal`), then retries pending VirtFusion deliveries, and
//! returns a JSON summary. Stops taking work [`Deps::stop_margin`] before the
//! Lambda deadline; whatever is left stays due and the next run does it.

use billing::dns::{Deadline, RenewalOptions, RenewalSummary, run_renewals};
use lambda_runtime::{Context, Error, LambdaEvent};
use ledger::Ledger;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use tokio::time::Instant;

/// Used when the invocation carries no deadline (tests, local calls).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(50);

pub struct Deps {
    pub ledger: Ledger,
    pub options: RenewalOptions,
    /// No new page is started this close to the Lambda deadline.
    pub stop_margin: Duration,
    /// An event `time` further than this ahead of the wall clock is refused:
    /// a wrong clock must not renew (charge) periods that have not started.
    pub max_clock_skew: time::Duration,
    secrets: billing_config::Secrets,
    /// Built at the first run that has pending deliveries to retry.
    virtfusion: tokio::sync::OnceCell<virtfusion::VirtFusionClient>,
}

impl Deps {
    pub async fn from_env() -> Deps {
        let sdk = billing_config::load_aws_config().await;
        Deps::new(Ledger::new(
            billing_config::dynamo_client(&sdk),
            billing_config::table_name(),
        ))
    }

    pub fn new(ledger: Ledger) -> Deps {
        Deps {
            ledger,
            options: RenewalOptions::default(),
            stop_margin: Duration::from_secs(10),
            max_clock_skew: time::Duration::minutes(15),
            secrets: billing_config::Secrets::new(),
            virtfusion: tokio::sync::OnceCell::new(),
        }
    }

    /// With a given VirtFusion client (tests).
    pub fn with_virtfusion(mut self, client: virtfusion::VirtFusionClient) -> Deps {
        self.virtfusion = tokio::sync::OnceCell::new_with(Some(client));
        self
    }

    async fn virtfusion(&self) -> Option<&virtfusion::VirtFusionClient> {
        self.virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.secrets))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "VirtFusion client not configured"))
            .ok()
    }
}

/// The job's clock: the event's `time` (RFC 3339). An event without one
/// (a manual invoke with `{}`) runs at the wall clock.
pub fn job_clock(
    event: &Value,
    wall: OffsetDateTime,
    max_skew: time::Duration,
) -> Result<OffsetDateTime, String> {
    let now = match event.get("time") {
        None | Some(Value::Null) => {
            tracing::warn!("event has no time; using the wall clock");
            wall
        }
        Some(Value::String(text)) => billing::dns::dates::parse_time(text)
            .ok_or_else(|| format!("event time {text:?} is not RFC 3339"))?,
        Some(_) => return Err("event time must be a string".into()),
    };
    if now > wall + max_skew {
        return Err(format!("event time {now} is ahead of the clock"));
    }
    Ok(billing::dns::dates::to_millis(now))
}

/// When this invocation must be done by, if Lambda said.
pub fn invocation_end(context: &Context) -> Option<Instant> {
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

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    let now = job_clock(&payload, OffsetDateTime::now_utc(), deps.max_clock_skew)?;
    let end = invocation_end(&context).unwrap_or_else(|| Instant::now() + DEFAULT_BUDGET);
    let deadline = Deadline::before(end, deps.stop_margin);
    let mut summary = run_renewals(&deps.ledger, now, deadline, deps.options)
        .await
        .map_err(|error| {
            tracing::error!(%error, "renewal job failed");
            Error::from(format!("renewal job failed: {error}"))
        })?;
    summary.retried = retry_pending_virtfusion_deliveries(deps, now, deadline).await;
    log_summary(&summary);
    Ok(serde_json::to_value(&summary)?)
}

/// Retries pending VirtFusion token deliveries (at most
/// [`MAX_DELIVERY_RETRIES`] per run, those due at the job's clock, soonest
/// due first; a refused delivery backs off) with the rules of
/// `billing::checkout`: delivered at most once; an uncertain outcome goes to
/// review instead of being retried. Returns how many it retried.
pub async fn retry_pending_virtfusion_deliveries(
    deps: &Deps,
    now: OffsetDateTime,
    deadline: Deadline,
) -> u64 {
    let Some(client) = deps.virtfusion().await else {
        return 0;
    };
    match billing::deliveries::retry_pending(
        &deps.ledger,
        Some(client),
        MAX_DELIVERY_RETRIES,
        now,
        deadline.soft.into_std(),
    )
    .await
    {
        Ok(summary) => {
            tracing::info!(?summary, "pending VirtFusion deliveries retried");
            u64::from(summary.attempted)
        }
        Err(error) => {
            tracing::error!(%error, "retrying VirtFusion deliveries failed");
            0
        }
    }
}

/// Bound on delivery retries per run (each is one VirtFusion call).
pub const MAX_DELIVERY_RETRIES: u32 = 50;

fn log_summary(summary: &RenewalSummary) {
    tracing::info!(
        now = %summary.now,
        renewed = summary.renewed,
        past_due = summary.past_due,
        expired = summary.expired,
        retried = summary.retried,
        skipped = summary.skipped,
        errors = summary.errors,
        interrupted = summary.interrupted,
        scanned = summary.scanned,
        pages = summary.pages,
        complete = summary.complete,
        elapsed_ms = summary.elapsed_ms,
        "renewal job done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const WALL: OffsetDateTime = datetime!(2025-11-25 12:00:30 UTC);

    #[test]
    fn the_event_time_is_the_clock() {
        let skew = time::Duration::minutes(15);
        let event =
            json!({"detail-type": "Scheduled Event", "time": "2025-11-25T12:00:00Z", "detail": {}});
        assert_eq!(
            job_clock(&event, WALL, skew).unwrap(),
            datetime!(2025-11-25 12:00 UTC)
        );
        assert_eq!(job_clock(&json!({}), WALL, skew).unwrap(), WALL);
        assert!(job_clock(&json!({"time": "noon"}), WALL, skew).is_err());
        assert!(job_clock(&json!({"time": 1}), WALL, skew).is_err());
        assert!(
            job_clock(&json!({"time": "2025-11-26T12:00:00Z"}), WALL, skew).is_err(),
            "future"
        );
    }

    #[test]
    fn a_context_without_deadline_has_no_end() {
        assert!(invocation_end(&Context::default()).is_none());
        let mut context = Context::default();
        let in_a_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        context.deadline = in_a_minute;
        let end = invocation_end(&context).unwrap();
        assert!(end > Instant::now() + Duration::from_secs(55));
    }
}
