//! `renewal-cron`: invoked by an EventBridge schedule. The event's `time` is
//! the job's clock ("now"). Renews every due subscription, DNS plans and
//! platform services alike (one engine: `billing::subscriptions::renewal`),
//! then retries pending VirtFusion deliveries, and
//! returns a JSON summary. Stops taking work [`Deps::stop_margin`] before the
//! Lambda deadline; whatever is left stays due and the next run does it.
//!
//! With a fan-out queue (`RENEWAL_QUEUE_URL`, deployed) it is the
//! coordinator: it sends one message per partition of the due index
//! ([`fanout::FanOut`]) and `renewal-worker` renews each partition in
//! parallel; the summary then counts `dispatched` messages and the workers
//! log the renewals. Without one (the local stack, tests) it runs every
//! partition itself.

pub mod fanout;

use billing::dns::{Deadline, RenewalOptions, RenewalSummary, run_renewals};
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
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
    /// `None`: no limit (the local stack, to run the job "as of next month").
    pub max_clock_skew: Option<time::Duration>,
    /// Where partition messages go; `None`: the job runs every partition itself.
    pub fan_out: Option<fanout::FanOut>,
    secrets: std::sync::Arc<billing_config::Secrets>,
    /// Built at the first run that has pending deliveries to retry.
    virtfusion: tokio::sync::OnceCell<virtfusion::VirtFusionClient>,
}

impl Deps {
    pub async fn from_env() -> Deps {
        let sdk = billing_config::load_aws_config().await;
        let fan_out = fanout::FanOut::from_env(&sdk);
        // Without a queue (the local stack) the job renews every partition
        // itself, the workers' work: locally it then signs as the worker,
        // whose role allows it (local IAM, docs/reliability.md).
        let dynamo_sdk = match fan_out {
            Some(_) => sdk.clone(),
            None => billing_config::acting_as(&sdk, "renewal-worker"),
        };
        let mut deps = Deps::new(billing::events::watch_low_balance(
            Ledger::new(
                billing_config::dynamo_client(&dynamo_sdk),
                billing_config::table_name(),
            ),
            billing::events::low_balance_threshold(),
        ));
        deps.fan_out = fan_out;
        deps
    }

    pub fn new(ledger: Ledger) -> Deps {
        Deps {
            ledger,
            options: RenewalOptions::default(),
            stop_margin: Duration::from_secs(10),
            max_clock_skew: max_clock_skew_from_env(),
            fan_out: None,
            secrets: std::sync::Arc::new(billing_config::Secrets::new()),
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

/// Default of `RENEWAL_MAX_CLOCK_SKEW_SECONDS` (API.md "Renewal job").
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: i64 = 900;

/// `RENEWAL_MAX_CLOCK_SKEW_SECONDS`: seconds, or `off` (the local stack).
/// Unset or unreadable: the default (an unreadable value is logged; the
/// limit is never dropped by a typo).
pub fn max_clock_skew_from_env() -> Option<time::Duration> {
    parse_max_clock_skew(billing_config::env_opt("RENEWAL_MAX_CLOCK_SKEW_SECONDS").as_deref())
}

pub fn parse_max_clock_skew(raw: Option<&str>) -> Option<time::Duration> {
    let default = Some(time::Duration::seconds(DEFAULT_MAX_CLOCK_SKEW_SECONDS));
    match raw.map(str::trim) {
        None => default,
        Some(off) if off.eq_ignore_ascii_case("off") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seconds) if seconds >= 0 => Some(time::Duration::seconds(seconds)),
            _ => {
                tracing::error!(
                    value = text,
                    "RENEWAL_MAX_CLOCK_SKEW_SECONDS is not seconds or `off`; using 900"
                );
                default
            }
        },
    }
}

/// Why a run was refused or failed: the Lambda error's `errorType`.
#[derive(Debug, PartialEq, Eq)]
pub enum JobError {
    /// The event's `time` is further ahead of the wall clock than allowed.
    ClockSkew(String),
    /// The event is not a schedule event (its `time` unreadable).
    InvalidEvent(String),
    /// The job could not run (e.g. the due index could not be read); retried.
    RenewalFailed(String),
}

impl From<JobError> for Diagnostic {
    fn from(error: JobError) -> Diagnostic {
        let (error_type, error_message) = match error {
            JobError::ClockSkew(m) => ("ClockSkew", m),
            JobError::InvalidEvent(m) => ("InvalidEvent", m),
            JobError::RenewalFailed(m) => ("RenewalFailed", m),
        };
        Diagnostic {
            error_type: error_type.to_owned(),
            error_message,
        }
    }
}

/// The job's clock: the event's `time` (RFC 3339). An event without one
/// (a manual invoke with `{}`) runs at the wall clock.
pub fn job_clock(
    event: &Value,
    wall: OffsetDateTime,
    max_skew: Option<time::Duration>,
) -> Result<OffsetDateTime, JobError> {
    let now = match event.get("time") {
        None | Some(Value::Null) => {
            tracing::warn!("event has no time; using the wall clock");
            wall
        }
        Some(Value::String(text)) => billing::dns::dates::parse_time(text).ok_or_else(|| {
            JobError::InvalidEvent(format!("event time {text:?} is not RFC 3339"))
        })?,
        Some(_) => return Err(JobError::InvalidEvent("event time must be a string".into())),
    };
    check_skew(now, wall, max_skew)
}

/// Refuses a clock further than `max_skew` ahead of the wall clock (the
/// schedule's, and each fanned-out partition message's, which carries it).
pub fn check_skew(
    now: OffsetDateTime,
    wall: OffsetDateTime,
    max_skew: Option<time::Duration>,
) -> Result<OffsetDateTime, JobError> {
    if let Some(max_skew) = max_skew
        && now > wall + max_skew
    {
        tracing::error!(event_time = %now, wall = %wall, max_skew_seconds = max_skew.whole_seconds(), "renewal run refused: event time ahead of the clock");
        return Err(JobError::ClockSkew(format!(
            "event time {} is more than {} s ahead of the clock ({}); set RENEWAL_MAX_CLOCK_SKEW_SECONDS=off only on a local stack",
            billing::dns::dates::format_time(now),
            max_skew.whole_seconds(),
            billing::dns::dates::format_time(wall)
        )));
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

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, JobError> {
    let (payload, context) = event.into_parts();
    let now = job_clock(&payload, OffsetDateTime::now_utc(), deps.max_clock_skew)?;
    let end = invocation_end(&context).unwrap_or_else(|| Instant::now() + DEFAULT_BUDGET);
    let deadline = Deadline::before(end, deps.stop_margin);
    let mut summary = match &deps.fan_out {
        Some(fan_out) => {
            let dispatched = fan_out.dispatch(now).await.map_err(|error| {
                tracing::error!(%error, "renewal fan-out failed");
                JobError::RenewalFailed(format!("renewal fan-out failed: {error}"))
            })?;
            RenewalSummary {
                now: billing::dns::dates::format_time(now),
                dispatched,
                ..RenewalSummary::default()
            }
        }
        None => run_renewals(&deps.ledger, now, deadline, deps.options)
            .await
            .map_err(|error| {
                tracing::error!(%error, "renewal job failed");
                JobError::RenewalFailed(format!("renewal job failed: {error}"))
            })?,
    };
    summary.retried = retry_pending_virtfusion_deliveries(deps, now, deadline).await;
    log_summary(&summary);
    serde_json::to_value(&summary)
        .map_err(|e| JobError::RenewalFailed(format!("summary not serialisable: {e}")))
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
        partitions = summary.partitions,
        dispatched = summary.dispatched,
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
    fn the_skew_limit_defaults_to_900_s_and_only_off_removes_it() {
        let default = Some(time::Duration::seconds(900));
        assert_eq!(parse_max_clock_skew(None), default);
        assert_eq!(
            parse_max_clock_skew(Some("60")),
            Some(time::Duration::seconds(60))
        );
        assert_eq!(parse_max_clock_skew(Some("off")), None);
        assert_eq!(parse_max_clock_skew(Some("-5")), default);
        assert_eq!(parse_max_clock_skew(Some("15m")), default);
    }

    #[test]
    fn refusals_name_their_problem_not_a_rust_type() {
        let event = json!({"time": "2025-12-25T12:00:00Z"});
        let refused = job_clock(&event, WALL, Some(time::Duration::minutes(15))).unwrap_err();
        let diagnostic = Diagnostic::from(refused);
        assert_eq!(diagnostic.error_type, "ClockSkew");
        assert!(diagnostic.error_message.contains("ahead of the clock"));
        // Turned off (local stack): a run "as of next month" is allowed.
        assert_eq!(
            job_clock(&event, WALL, None).unwrap(),
            datetime!(2025-12-25 12:00 UTC)
        );
        let bad = Diagnostic::from(job_clock(&json!({"time": 5}), WALL, None).unwrap_err());
        assert_eq!(bad.error_type, "InvalidEvent");
        assert_eq!(
            Diagnostic::from(JobError::RenewalFailed("x".into())).error_type,
            "RenewalFailed"
        );
    }

    #[test]
    fn the_event_time_is_the_clock() {
        let skew = Some(time::Duration::minutes(15));
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
