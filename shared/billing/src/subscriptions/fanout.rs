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
//! A worker that stops a partition at its deadline while still getting
//! somewhere sends the rest on as a continuation: the same message with a
//! `hop` count (`{"partition": ..., "time": ..., "hop": 3}`), at most
//! [`MAX_HOPS`] in a row.
//!
//! A message may be delivered more than once (SQS standard queues, retried
//! invocations): running a partition twice, even at once, charges each
//! period once, so a duplicate costs reads, never money.

use super::dates::{format_time, parse_time};
use super::store::RenewalPartition;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Continuations of one partition's run at most (24 invocations of the
/// worker's 120 s: under an hour, before the next scheduled run).
pub const MAX_HOPS: u32 = 24;

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

    /// The body of the `hop`-th continuation of this message.
    pub fn to_continuation_body(&self, hop: u32) -> String {
        json!({"partition": self.partition.pk(), "time": format_time(self.time), "hop": hop})
            .to_string()
    }

    /// Strict: a JSON object with exactly a known partition and an RFC 3339
    /// time (and a continuation's `hop`).
    pub fn parse(body: &str) -> Result<PartitionMessage, BadMessage> {
        PartitionMessage::parse_hop(body).map(|(message, _)| message)
    }

    /// The message and which continuation it is (0: the coordinator's).
    pub fn parse_hop(body: &str) -> Result<(PartitionMessage, u32), BadMessage> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| BadMessage(format!("body is not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| BadMessage("body is not an object".into()))?;
        if let Some(unknown) = object
            .keys()
            .find(|k| !matches!(k.as_str(), "partition" | "time" | "hop"))
        {
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
        let hop = match object.get("hop") {
            None => 0,
            Some(hop) => hop
                .as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .filter(|h| (1..=MAX_HOPS).contains(h))
                .ok_or_else(|| BadMessage(format!("hop is not 1..={MAX_HOPS}")))?,
        };
        Ok((PartitionMessage { partition, time }, hop))
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
            assert_eq!(
                PartitionMessage::parse_hop(&message.to_continuation_body(3)),
                Ok((*message, 3))
            );
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
            r#"{"partition":"RENEWAL#1","time":"2025-11-25T12:00:00Z","hop":0}"#,
            r#"{"partition":"RENEWAL#1","time":"2025-11-25T12:00:00Z","hop":25}"#,
            r#"{"partition":"RENEWAL#1","time":"2025-11-25T12:00:00Z","hop":"1"}"#,
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
