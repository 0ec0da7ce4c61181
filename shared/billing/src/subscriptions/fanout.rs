//! The renewal job fanned out: the scheduled `renewal-cron` (coordinator)
//! sends one message per partition of the due index to a queue, and
//! `renewal-worker` runs each message's partition
//! ([`run_partition`](super::renewal::run_partition)) at the coordinator's
//! clock. This module is the message both sides agree on:
//!
//! ```json
//! {"partition": "RENEWAL#7", "time": "2025-11-25T12:00:00.000Z"}
//! ```
//!
//! A message may be delivered more than once (SQS standard queues, retried
//! invocations): running a partition twice, even at once, charges each
//! period once, so a duplicate costs reads, never money.

use super::dates::{format_time, parse_time};
use super::store::RenewalPartition;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// One partition to renew at the job's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionMessage {
    pub partition: RenewalPartition,
    /// The coordinator's clock (the schedule event's `time`).
    pub time: OffsetDateTime,
}

/// Why a message was refused (it is reported as failed and, after the
/// queue's retries, lands in the dead-letter queue).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("renewal message refused: {0}")]
pub struct BadMessage(pub String);

impl PartitionMessage {
    /// One message per partition of the index (the shards, then the legacy one).
    pub fn all(time: OffsetDateTime) -> Vec<PartitionMessage> {
        RenewalPartition::all()
            .into_iter()
            .map(|partition| PartitionMessage { partition, time })
            .collect()
    }

    pub fn to_body(&self) -> String {
        json!({"partition": self.partition.pk(), "time": format_time(self.time)}).to_string()
    }

    /// A batch entry id SQS accepts (alphanumerics, `-`, `_`).
    pub fn entry_id(&self) -> String {
        match self.partition {
            RenewalPartition::Shard(shard) => format!("shard-{shard}"),
            RenewalPartition::Legacy => "legacy".to_owned(),
        }
    }

    /// Strict: a JSON object with exactly a known partition and an RFC 3339 time.
    pub fn parse(body: &str) -> Result<PartitionMessage, BadMessage> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| BadMessage(format!("body is not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| BadMessage("body is not an object".into()))?;
        if let Some(unknown) = object.keys().find(|k| *k != "partition" && *k != "time") {
            return Err(BadMessage(format!("unknown field {unknown:?}")));
        }
        let partition = object
            .get("partition")
            .and_then(Value::as_str)
            .and_then(RenewalPartition::parse)
            .ok_or_else(|| BadMessage("partition is not a renewal index partition".into()))?;
        let time = object
            .get("time")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .ok_or_else(|| BadMessage("time is not RFC 3339".into()))?;
        Ok(PartitionMessage { partition, time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn messages_round_trip_and_cover_every_partition() {
        let at = datetime!(2025-11-25 12:00 UTC);
        let all = PartitionMessage::all(at);
        assert_eq!(
            all.len(),
            usize::from(super::super::store::RENEWAL_SHARDS) + 1
        );
        for message in &all {
            assert_eq!(PartitionMessage::parse(&message.to_body()), Ok(*message));
            assert!(message.entry_id().len() <= 80);
        }
        let ids: std::collections::HashSet<_> =
            all.iter().map(PartitionMessage::entry_id).collect();
        assert_eq!(ids.len(), all.len(), "entry ids are unique in a batch");
        assert_eq!(
            all[7].to_body(),
            r#"{"partition":"RENEWAL#7","time":"2025-11-25T12:00:00.000Z"}"#
        );
    }

    #[test]
    fn bad_messages_are_refused() {
        for body in [
            "",
            "[]",
            r#"{"partition":"RENEWAL#16","time":"2025-11-25T12:00:00Z"}"#,
            r#"{"partition":"PLAN","time":"2025-11-25T12:00:00Z"}"#,
            r#"{"partition":"RENEWAL#1","time":"noon"}"#,
            r#"{"partition":"RENEWAL#1"}"#,
            r#"{"partition":"RENEWAL#1","time":"2025-11-25T12:00:00Z","extra":1}"#,
        ] {
            assert!(PartitionMessage::parse(body).is_err(), "{body}");
        }
        assert_eq!(
            PartitionMessage::parse(r#"{"partition":"RENEWAL","time":"2025-11-25T12:00:00Z"}"#)
                .map(|m| m.partition),
            Ok(RenewalPartition::Legacy)
        );
    }
}
