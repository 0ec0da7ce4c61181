//! `renewal-worker`: the renewal job's workers. Triggered by the SQS queue
//! that `renewal-cron` fills with one message per partition of the due
//! index (`{"partition": "RENEWAL#7", "time": "..."}`); renews that
//! partition at the message's clock with the one engine
//! (`billing::subscriptions::renewal::run_partition`). Batch size 1 in the
//! template; a batch of several is worked through in order.
//!
//! Answers with partial batch failures (`batchItemFailures`): a message
//! fails — and SQS delivers it again after its visibility timeout, then to
//! the dead-letter queue — when its clock is too far ahead of the wall
//! clock (the schedule's rule, `ClockSkew`), the index could not be read,
//! or the partition was not finished before the deadline without renewing
//! anything. A partition stopped at the deadline (or the page bound) after
//! settling some subscriptions continues in a new message instead (a
//! continuation, at most `MAX_HOPS` in a row), so a busy partition never
//! spends the queue's `maxReceiveCount`; an unreadable message goes
//! straight to the dead-letter queue (`Requeue`). Without a queue
//! configured (locally) both are failed messages, as before. A
//! subscription that fails on its own is logged and left for the next
//! run, as in `renewal-cron`. Running a partition twice — a duplicate
//! delivery, a redelivery racing a slow first run — charges each period once.

use billing::dns::{Deadline, RenewalOptions, RenewalSummary};
use billing::subscriptions::fanout::{MAX_HOPS, PartitionMessage};
use billing::subscriptions::run_partition;
use lambda_runtime::{Diagnostic, LambdaEvent};
use ledger::Ledger;
use renewal_cron_fn::{JobError, check_skew, invocation_end, max_clock_skew_from_env};
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

mod requeue;
pub use requeue::Requeue;

pub struct Deps {
    pub ledger: Ledger,
    pub options: RenewalOptions,
    /// No new page is started this close to the Lambda deadline.
    pub stop_margin: Duration,
    /// As `renewal-cron`'s (`RENEWAL_MAX_CLOCK_SKEW_SECONDS`).
    pub max_clock_skew: Option<time::Duration>,
    /// The queue continuations go to and the dead-letter queue (`None`
    /// locally without a queue: such messages are failed, as SQS retries them).
    pub requeue: Option<Requeue>,
}

impl Deps {
    pub async fn from_env() -> Deps {
        let sdk = billing_config::load_aws_config().await;
        let mut deps = Deps::new(billing::events::watch_low_balance(
            Ledger::new(
                billing_config::dynamo_client(&sdk),
                billing_config::table_name(),
            ),
            billing::events::low_balance_threshold(),
        ));
        deps.requeue = Requeue::from_env(&sdk);
        deps
    }

    pub fn new(ledger: Ledger) -> Deps {
        Deps {
            ledger,
            options: RenewalOptions::default(),
            stop_margin: Duration::from_secs(10),
            max_clock_skew: max_clock_skew_from_env(),
            requeue: None,
        }
    }
}

/// Why one message was not done (logged; the message is reported failed).
#[derive(Debug)]
pub struct MessageFailed {
    /// `BadMessage`, `ClockSkew`, `RenewalFailed` or `Unfinished`.
    pub error_type: &'static str,
    pub message: String,
    /// The continuation to send instead of failing (an unfinished
    /// partition that settled some subscriptions, hops left).
    pub continuation: Option<String>,
}

impl From<JobError> for MessageFailed {
    fn from(error: JobError) -> MessageFailed {
        let diagnostic = Diagnostic::from(error);
        let error_type = match diagnostic.error_type.as_str() {
            "ClockSkew" => "ClockSkew",
            "InvalidEvent" => "BadMessage",
            _ => "RenewalFailed",
        };
        MessageFailed {
            error_type,
            message: diagnostic.error_message,
            continuation: None,
        }
    }
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, JobError> {
    let (payload, context) = event.into_parts();
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| JobError::InvalidEvent("not an SQS event (no Records)".into()))?;
    let end = invocation_end(&context)
        .unwrap_or_else(|| Instant::now() + renewal_cron_fn::DEFAULT_BUDGET);
    let deadline = Deadline::before(end, deps.stop_margin);
    let mut failures = Vec::new();
    for record in records {
        let Some(id) = record.get("messageId").and_then(Value::as_str) else {
            // Without its id a failure cannot be reported: fail the batch.
            return Err(JobError::InvalidEvent(
                "an SQS record has no messageId".into(),
            ));
        };
        let body = record.get("body").and_then(Value::as_str).unwrap_or("");
        if let Err(failed) = run_message(deps, body, OffsetDateTime::now_utc(), deadline).await
            && !handed_on(deps, id, body, &failed).await
        {
            tracing::error!(message_id = id, error_type = failed.error_type, error = %failed.message, "renewal partition message failed; SQS delivers it again");
            failures.push(json!({"itemIdentifier": id}));
        }
    }
    Ok(json!({"batchItemFailures": failures}))
}

/// Whether a message that was not done is taken care of without a retry:
/// its continuation sent, or (unreadable) put in the dead-letter queue.
async fn handed_on(deps: &Deps, id: &str, body: &str, failed: &MessageFailed) -> bool {
    let Some(requeue) = &deps.requeue else {
        return false;
    };
    if let Some(continuation) = &failed.continuation {
        return match requeue.continue_with(continuation).await {
            Ok(()) => {
                tracing::info!(message_id = id, reason = %failed.message, "renewal partition continues in a new message");
                true
            }
            Err(error) => {
                tracing::warn!(message_id = id, %error, "continuation not sent; the message is retried");
                false
            }
        };
    }
    if failed.error_type != "BadMessage" {
        return false;
    }
    match requeue
        .dead_letter(body, failed.error_type, &failed.message)
        .await
    {
        Ok(()) => {
            tracing::error!(message_id = id, error_type = failed.error_type, error = %failed.message, "unreadable renewal message moved to the dead-letter queue");
            true
        }
        Err(error) => {
            tracing::warn!(message_id = id, %error, "unreadable message not dead-lettered; SQS retries it");
            false
        }
    }
}

/// Renews the partition one message names, at its clock (checked against
/// `wall`). Finished (every due subscription of the partition looked at) or
/// an error.
pub async fn run_message(
    deps: &Deps,
    body: &str,
    wall: OffsetDateTime,
    deadline: Deadline,
) -> Result<RenewalSummary, MessageFailed> {
    let (message, hop) = PartitionMessage::parse_hop(body).map_err(|e| MessageFailed {
        error_type: "BadMessage",
        message: e.to_string(),
        continuation: None,
    })?;
    let now = check_skew(message.time, wall, deps.max_clock_skew)?;
    if Instant::now() >= deadline.soft {
        return Err(unfinished(message, "no time left in this invocation", None));
    }
    let summary = run_partition(&deps.ledger, message.partition, now, deadline, deps.options)
        .await
        .map_err(|error| JobError::RenewalFailed(format!("renewal partition failed: {error}")))?;
    tracing::info!(
        partition = %message.partition,
        now = %summary.now,
        renewed = summary.renewed,
        past_due = summary.past_due,
        expired = summary.expired,
        skipped = summary.skipped,
        errors = summary.errors,
        interrupted = summary.interrupted,
        scanned = summary.scanned,
        pages = summary.pages,
        complete = summary.complete,
        elapsed_ms = summary.elapsed_ms,
        "renewal partition done"
    );
    if summary.stopped_early || summary.interrupted > 0 {
        // Progress: subscriptions settled (they left the due window), so
        // the next run starts further on. None: the retry is the bound.
        let settled = summary.renewed + summary.past_due + summary.expired;
        let continuation =
            (settled > 0 && hop < MAX_HOPS).then(|| message.to_continuation_body(hop + 1));
        return Err(unfinished(
            message,
            "stopped at the deadline or the page bound",
            continuation,
        ));
    }
    Ok(summary)
}

fn unfinished(message: PartitionMessage, why: &str, continuation: Option<String>) -> MessageFailed {
    let next = if continuation.is_some() {
        "a new message carries on"
    } else {
        "the redelivery carries on"
    };
    MessageFailed {
        error_type: "Unfinished",
        message: format!("{} not finished ({why}); {next}", message.partition),
        continuation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_keep_their_names() {
        let skew = MessageFailed::from(JobError::ClockSkew("ahead".into()));
        assert_eq!(
            (skew.error_type, skew.message.as_str()),
            ("ClockSkew", "ahead")
        );
        assert_eq!(
            MessageFailed::from(JobError::RenewalFailed("x".into())).error_type,
            "RenewalFailed"
        );
    }
}
