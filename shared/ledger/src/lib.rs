//! The custom-credit ledger, kept in one DynamoDB table.
//!
//! Every balance change goes through [`Ledger::apply`]: one strongly
//! consistent `GetItem` of the account, then one `TransactWriteItems` that
//! (1) moves the balance *if* the account's `seq` is still the one read,
//! (2) appends the numbered entry, (3) puts the optional exactly-once marker and
//! (4) writes whatever the caller's change pays for — all or nothing.
//! Conflicts are retried with bounded, jittered backoff.
//!
//! Item layout (single table, `pk`/`sk` strings):
//!
//! | item | pk | sk |
//! | --- | --- | --- |
//! | account | `USER#<id>` | `CREDITS` |
//! | entry | `USER#<id>` | `ENTRY#<seq, 12 digits>` |
//! | once-marker | `ONCE#<kind>#<id>` | `ONCE` |
//!
//! Entries also carry `gsi3pk` / `gsi3sk`, their keys in the all-users
//! entry index (admin listing by day; see [`keys::ENTRY_INDEX`]).

mod audit;
mod capacity;
mod error;
mod index;
mod item;
pub mod keys;
mod metrics;
mod mutation;
mod read;
mod retry;

pub use audit::AuditReport;
pub use capacity::{CapacityMeter, Consumed};
pub use error::LedgerError;
pub use index::{IndexPage, IndexedEntry, KindFilter};
pub use item::{AttrMap, DNS_PLAN_SERVICE_TYPE, Entry, EntryKind, ServiceRef};
pub use keys::{ENTRY_INDEX_SHARDS, OnceKey, ServiceType, UserId, UserIdError};
pub use metrics::DynamoCallCounter;
pub use mutation::{Applied, Change, ChangeHook, ChangeOutcome, EntryDetails, Overdraft, Preview};
pub use read::{EntryCursor, EntryPage};
pub use retry::{BackoffShape, RetryPolicy};

pub use aws_sdk_dynamodb as dynamodb;
pub use billing_money::Usd;

use aws_sdk_dynamodb::Client;

/// Handle on the ledger table. Cheap to clone; create once per cold start.
#[derive(Clone)]
pub struct Ledger {
    client: Client,
    table: String,
    retry: RetryPolicy,
    hook: Option<ChangeHook>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("table", &self.table)
            .field("retry", &self.retry)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    pub fn new(client: Client, table: impl Into<String>) -> Ledger {
        Ledger {
            client,
            table: table.into(),
            retry: RetryPolicy::default(),
            hook: None,
        }
    }

    /// Every change this handle applies also asks `hook` for one more item to
    /// commit with it (e.g. the outbox event of a debit that crosses the
    /// low-balance threshold). The hook sees the change and what it would do.
    pub fn with_change_hook(mut self, hook: ChangeHook) -> Ledger {
        self.hook = Some(hook);
        self
    }

    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Ledger {
        self.retry = retry;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// RFC 3339 UTC with milliseconds: sorts as text in time order.
pub fn now_rfc3339() -> String {
    format_rfc3339(time::OffsetDateTime::now_utc())
}

pub fn format_rfc3339(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}
