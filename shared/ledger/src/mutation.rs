//! The one mutation primitive: [`Ledger::apply`].

use crate::item::{AccountState, AttrMap, Entry, EntryKind, get_u64, n, s, usd};
use crate::keys::{ACCOUNT_SK, ONCE_SK, OnceKey, UserId};
use crate::{Ledger, LedgerError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use billing_money::Usd;
use sha2::{Digest, Sha256};

/// Whether a debit may take the balance below zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overdraft {
    /// Spending: refused with [`LedgerError::InsufficientBalance`].
    Refuse,
    /// Only for money PayPal already took back (reversal, forced refund): recorded as debt.
    Allow,
}

/// What the entry says about the change (its audit fields).
#[derive(Clone, Debug)]
pub struct EntryDetails {
    pub kind: EntryKind,
    pub description: String,
    pub admin_id: Option<String>,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// For the service kinds (required there): what the entry is about.
    pub service: Option<crate::ServiceRef>,
}

impl EntryDetails {
    pub fn new(kind: EntryKind, description: impl Into<String>) -> EntryDetails {
        EntryDetails {
            kind,
            description: description.into(),
            admin_id: None,
            reason: None,
            reference: None,
            service: None,
        }
    }

    /// The service type, service id and charge id a service entry names.
    pub fn service(
        mut self,
        service_type: impl Into<String>,
        service_id: Option<String>,
        charge_id: Option<String>,
    ) -> Self {
        self.service = Some(crate::ServiceRef {
            service_type: service_type.into(),
            service_id,
            charge_id,
        });
        self
    }

    pub fn admin(mut self, admin_id: impl Into<String>, reason: impl Into<String>) -> Self {
        self.admin_id = Some(admin_id.into());
        self.reason = Some(reason.into());
        self
    }

    pub fn reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }
}

/// The state a change would produce, for caller items that record it
/// (e.g. a stored idempotent response carrying the new balance).
#[derive(Clone, Debug)]
pub struct Preview {
    pub seq: u64,
    pub balance_before: Usd,
    pub balance_after: Usd,
    pub created_at: String,
}

impl Preview {
    pub fn of(entry: &Entry) -> Preview {
        Preview {
            seq: entry.seq,
            balance_before: entry.balance_before,
            balance_after: entry.balance_after,
            created_at: entry.created_at.clone(),
        }
    }
}

type ItemBuilder = Box<dyn Fn(&Preview) -> Result<TransactWriteItem, LedgerError> + Send + Sync>;

/// See [`Ledger::with_change_hook`]: `Ok(None)` adds nothing. Its item must
/// carry no condition (it is never reported as a caller item).
pub type ChangeHook = std::sync::Arc<
    dyn Fn(&Change, &Preview) -> Result<Option<TransactWriteItem>, LedgerError> + Send + Sync,
>;

/// One balance change and everything that must commit with it.
pub struct Change {
    pub user: UserId,
    /// Signed: positive credits, negative debits.
    pub amount: Usd,
    pub details: EntryDetails,
    pub once: Option<OnceKey>,
    pub overdraft: Overdraft,
    extra: Vec<ItemBuilder>,
}

impl Change {
    pub fn new(user: UserId, amount: Usd, details: EntryDetails) -> Change {
        Change {
            user,
            amount,
            details,
            once: None,
            overdraft: Overdraft::Refuse,
            extra: Vec::new(),
        }
    }

    /// Apply at most once per `key`, ever.
    pub fn once(mut self, key: OnceKey) -> Change {
        self.once = Some(key);
        self
    }

    pub fn overdraft(mut self, overdraft: Overdraft) -> Change {
        self.overdraft = overdraft;
        self
    }

    /// Commit `item` in the same transaction. If its condition fails the whole
    /// change is refused with [`LedgerError::ConditionFailed`] carrying this
    /// item's index (0 for the first added) — give it
    /// `ReturnValuesOnConditionCheckFailure::AllOld` to see what was there.
    pub fn with_item(self, item: TransactWriteItem) -> Change {
        self.with_item_for(move |_| Ok(item.clone()))
    }

    /// Like [`Change::with_item`], built from the state the change produces.
    pub fn with_item_for(
        mut self,
        build: impl Fn(&Preview) -> Result<TransactWriteItem, LedgerError> + Send + Sync + 'static,
    ) -> Change {
        self.extra.push(Box::new(build));
        self
    }

    /// How many caller items were added (the index the next one will get).
    pub fn extra_items(&self) -> usize {
        self.extra.len()
    }
}

/// The result of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry that moved the money.
    pub entry: Entry,
    /// The account balance after it (for a replay: the balance now).
    pub balance: Usd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// This call moved the money.
    Applied(Applied),
    /// The once-key had already been applied (by this or another caller);
    /// nothing moved now. Carries the earlier entry and today's balance.
    AlreadyApplied(Applied),
}

impl ChangeOutcome {
    pub fn applied(&self) -> &Applied {
        match self {
            ChangeOutcome::Applied(a) | ChangeOutcome::AlreadyApplied(a) => a,
        }
    }

    pub fn into_applied(self) -> Applied {
        match self {
            ChangeOutcome::Applied(a) | ChangeOutcome::AlreadyApplied(a) => a,
        }
    }

    pub fn is_first_time(&self) -> bool {
        matches!(self, ChangeOutcome::Applied(_))
    }
}

/// Positions in the transaction; caller items follow.
const ACCOUNT_INDEX: usize = 0;
const ENTRY_INDEX: usize = 1;

enum Attempt {
    Done(Box<ChangeOutcome>),
    /// Someone else moved first, or the outcome is unknown: re-read and retry.
    /// Carries the entry this attempt would have written, if it may exist.
    Retry {
        maybe_written: Option<u64>,
        /// A send of this attempt got no answer at all: it may still land.
        unanswered: bool,
    },
}

impl Ledger {
    /// Applies `change` atomically: one consistent `GetItem`, one
    /// `TransactWriteItems`, retried on conflict within [`crate::RetryPolicy`].
    #[tracing::instrument(skip_all, fields(user = %change.user, kind = change.details.kind.as_str()))]
    pub async fn apply(&self, change: Change) -> Result<ChangeOutcome, LedgerError> {
        // A service entry must name a valid service type, or it could not be read back.
        let service_type = change
            .details
            .service
            .as_ref()
            .map(|s| s.service_type.as_str());
        if change.details.kind.is_service()
            != service_type.is_some_and(|t| crate::ServiceType::parse(t).is_some())
        {
            return Err(LedgerError::corrupt(
                change.user.pk(),
                "a service entry needs a valid service type (and only a service entry has one)",
            ));
        }
        let mutation_id = uuid::Uuid::new_v4().simple().to_string();
        let created_at = crate::now_rfc3339();
        let mut maybe_written: Option<u64> = None;
        // The entry seq of the latest write that was sent and never answered
        // (rather than answered with an error): it can commit after we stop
        // looking, while the account is still at the seq it was read at.
        let mut in_doubt: Option<u64> = None;
        let mut attempts = 0;
        // A transient read failure (after the SDK's own retries) costs an
        // attempt, not the change: an earlier write whose answer was lost must
        // still be looked for before anything is reported.
        let mut read_failure: Option<LedgerError> = None;
        let started = std::time::Instant::now();
        let budget = std::time::Duration::from_millis(self.retry.max_elapsed_ms);
        let mut last_round = std::time::Duration::ZERO;
        'attempts: for attempt in 0..self.retry.max_attempts {
            if attempt > 0 {
                if started.elapsed() >= budget {
                    break;
                }
                let delay = self.retry.delay(attempt, started.elapsed(), last_round);
                tokio::time::sleep(delay).await;
            }
            attempts = attempt + 1;
            let round_started = std::time::Instant::now();
            let state = match self.read_account(&change.user).await {
                Ok(state) => state,
                Err(
                    e @ LedgerError::Dynamo {
                        transient: true, ..
                    },
                ) => {
                    read_failure = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // An earlier attempt whose answer we never saw may have committed:
            // the last one's, or an unanswered send that may land late.
            let earlier = [
                maybe_written,
                in_doubt.filter(|d| Some(*d) != maybe_written),
            ];
            for seq in earlier.into_iter().flatten() {
                match self.own_entry(&change.user, seq, &mutation_id, state).await {
                    Ok(Some(entry)) => {
                        return Ok(ChangeOutcome::Applied(Applied {
                            entry,
                            balance: state.balance,
                        }));
                    }
                    // Not ours: that attempt wrote nothing (this one sets it anew).
                    Ok(None) => {}
                    Err(
                        e @ LedgerError::Dynamo {
                            transient: true, ..
                        },
                    ) => {
                        read_failure = Some(e);
                        continue 'attempts;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Someone else's entry holds that slot: the unanswered send's
            // condition can no longer pass.
            if in_doubt.is_some_and(|seq| state.seq >= seq) {
                in_doubt = None;
            }
            read_failure = None;
            match self
                .attempt(&change, &mutation_id, &created_at, state, attempt)
                .await?
            {
                Attempt::Done(outcome) => return Ok(*outcome),
                Attempt::Retry {
                    maybe_written: seq,
                    unanswered,
                } => {
                    last_round = round_started.elapsed();
                    tracing::debug!(attempt, "ledger change retried");
                    maybe_written = seq;
                    // Sticky: a later attempt's clean answer does not
                    // stop an earlier unanswered send from landing.
                    if unanswered && seq.is_some() {
                        in_doubt = seq;
                    }
                }
            }
        }
        // The last attempt's answer may have been lost too: look once more, so
        // that a change that happened is never reported as failed — and if
        // that look fails too, say so: the change may have been applied.
        if let Some(seq) = maybe_written.or(in_doubt) {
            let mut slot_free = false;
            let looked = match self.read_account(&change.user).await {
                Ok(state) => {
                    slot_free = state.seq < seq;
                    self.own_entry(&change.user, seq, &mutation_id, state)
                        .await
                        .map(|entry| entry.map(|entry| (entry, state.balance)))
                }
                Err(e) => Err(e),
            };
            match looked {
                Ok(Some((entry, balance))) => {
                    return Ok(ChangeOutcome::Applied(Applied { entry, balance }));
                }
                // The entry's slot is still free, so the unanswered send may
                // yet commit (a request the SDK gave up on can still reach
                // DynamoDB): "busy, nothing written" would be a guess.
                Ok(None) if slot_free && in_doubt == Some(seq) => {
                    tracing::error!(
                        "ledger write outcome unknown: an unanswered send may still land"
                    );
                    return Err(LedgerError::OutcomeUnknown {
                        cause: "an unanswered write may still be applied".to_owned(),
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "ledger write outcome unknown and unverifiable");
                    return Err(LedgerError::OutcomeUnknown {
                        cause: e.to_string(),
                    });
                }
            }
        }
        tracing::warn!(
            attempts,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ledger retry budget exhausted"
        );
        Err(read_failure.unwrap_or(LedgerError::Contended { attempts }))
    }

    /// Entry `seq` if this change (`mutation_id`) wrote it.
    async fn own_entry(
        &self,
        user: &UserId,
        seq: u64,
        mutation_id: &str,
        state: AccountState,
    ) -> Result<Option<Entry>, LedgerError> {
        if state.seq < seq {
            return Ok(None);
        }
        Ok(self
            .read_entry(user, seq)
            .await?
            .filter(|entry| entry.mutation_id == mutation_id))
    }

    async fn attempt(
        &self,
        change: &Change,
        mutation_id: &str,
        created_at: &str,
        state: AccountState,
        attempt: u32,
    ) -> Result<Attempt, LedgerError> {
        let balance_after = state
            .balance
            .checked_add(change.amount)
            .map_err(|_| LedgerError::Overflow)?;
        if change.amount.is_negative()
            && balance_after.is_negative()
            && change.overdraft == Overdraft::Refuse
        {
            if let Some(once) = &change.once
                && let Some(earlier) = self.read_marker_outcome(once).await?
            {
                return Ok(Attempt::Done(Box::new(ChangeOutcome::AlreadyApplied(
                    earlier,
                ))));
            }
            return Err(LedgerError::InsufficientBalance {
                balance: state.balance,
            });
        }

        let entry = Entry {
            seq: state.seq + 1,
            kind: change.details.kind,
            amount: change.amount,
            balance_before: state.balance,
            balance_after,
            description: change.details.description.clone(),
            created_at: created_at.to_owned(),
            mutation_id: mutation_id.to_owned(),
            admin_id: change.details.admin_id.clone(),
            reason: change.details.reason.clone(),
            reference: change.details.reference.clone(),
            service: change.details.service.clone(),
        };
        // The ledger's invariants, asserted where the entry is written: it
        // follows the account's last entry, and after = before + amount.
        debug_assert_eq!(entry.seq, state.seq + 1, "entry seq follows the account's");
        debug_assert_eq!(
            entry.balance_before.checked_add(entry.amount).ok(),
            Some(entry.balance_after),
            "balance after = balance before + amount"
        );
        let preview = Preview {
            seq: entry.seq,
            balance_before: entry.balance_before,
            balance_after: entry.balance_after,
            created_at: entry.created_at.clone(),
        };

        let mut items = vec![
            self.account_put(&change.user, state, balance_after, created_at)?,
            self.guarded_put(entry.to_item(&change.user))?,
        ];
        let marker_index = match &change.once {
            Some(once) => {
                let mut marker = AttrMap::new();
                marker.insert("pk".into(), s(once.pk()));
                marker.insert("sk".into(), s(ONCE_SK));
                marker.insert("user".into(), s(change.user.as_str()));
                marker.insert("seq".into(), n(entry.seq));
                marker.insert("createdAt".into(), s(created_at));
                items.push(self.guarded_put(marker)?);
                Some(items.len() - 1)
            }
            None => None,
        };
        let extra_start = items.len();
        for build in &change.extra {
            items.push(build(&preview)?);
        }
        let extra_end = items.len();
        if let Some(hook) = &self.hook
            && let Some(item) = hook(change, &preview)?
        {
            items.push(item);
        }

        // How many times the SDK sent this request (its own retries included).
        let sends = crate::DynamoCallCounter::default();
        let unanswered = crate::metrics::UnansweredSends::default();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(request_token(mutation_id, state.seq, attempt))
            .customize()
            .interceptor(sends.clone())
            .interceptor(unanswered.clone())
            .send()
            .await;

        let err = match result {
            Ok(_) => {
                return Ok(Attempt::Done(Box::new(ChangeOutcome::Applied(Applied {
                    entry,
                    balance: balance_after,
                }))));
            }
            Err(err) => err,
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                cancel.cancellation_reasons().to_vec()
            }
            _ => {
                let error = LedgerError::dynamo("TransactWriteItems", &err);
                return match error {
                    // Unknown outcome (timeout, 5xx, throttling after the SDK's retries):
                    // the write may have landed; the next attempt checks.
                    LedgerError::Dynamo {
                        transient: true, ..
                    } => {
                        tracing::warn!(error = %error, "ledger write outcome unknown; retrying");
                        Ok(Attempt::Retry {
                            maybe_written: Some(entry.seq),
                            unanswered: unanswered.any(),
                        })
                    }
                    other => Err(other),
                };
            }
        };

        let failed = |i: usize| reason_code(&reasons, i) == Some("ConditionalCheckFailed");
        if let (Some(marker_index), Some(once)) = (marker_index, &change.once)
            && failed(marker_index)
        {
            return match self.read_marker_outcome(once).await? {
                Some(earlier) => Ok(Attempt::Done(Box::new(ChangeOutcome::AlreadyApplied(
                    earlier,
                )))),
                None => Err(LedgerError::corrupt(once.pk(), "marker vanished")),
            };
        }
        if let Some(index) = (extra_start..extra_end).find(|&i| failed(i)) {
            return Err(LedgerError::ConditionFailed {
                index: index - extra_start,
                existing: reasons
                    .get(index)
                    .and_then(|r| r.item().cloned())
                    .map(Box::new),
            });
        }
        if failed(ACCOUNT_INDEX) || failed(ENTRY_INDEX) {
            // If the entry we meant to write is there and is ours, an earlier
            // unacknowledged attempt of this very change committed.
            let ours = reasons
                .get(ENTRY_INDEX)
                .and_then(|r| r.item())
                .and_then(|item| crate::item::opt_s(item, "mutationId"))
                .is_some_and(|id| id == mutation_id);
            if ours {
                let balance = self.read_account(&change.user).await?.balance;
                return Ok(Attempt::Done(Box::new(ChangeOutcome::Applied(Applied {
                    entry,
                    balance,
                }))));
            }
            return Ok(Attempt::Retry {
                maybe_written: None,
                unanswered: false,
            });
        }
        if reasons.iter().any(|r| {
            matches!(
                r.code(),
                Some("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
            )
        }) {
            // This send wrote nothing; but if the SDK resent the request after
            // an answer it never got (a reset or 5xx), that earlier send may
            // have committed: the next attempt looks.
            return Ok(Attempt::Retry {
                maybe_written: (sends.total() > 1).then_some(entry.seq),
                unanswered: unanswered.any(),
            });
        }
        let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
        Err(LedgerError::Dynamo {
            operation: "TransactWriteItems",
            message: format!("transaction cancelled: {codes:?}"),
            transient: false,
        })
    }

    fn account_put(
        &self,
        user: &UserId,
        seen: AccountState,
        balance: Usd,
        now: &str,
    ) -> Result<TransactWriteItem, LedgerError> {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(user.pk()));
        item.insert("sk".into(), s(ACCOUNT_SK));
        item.insert("balance".into(), usd(balance));
        item.insert("seq".into(), n(seen.seq + 1));
        item.insert("updatedAt".into(), s(now));
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        // The optimistic lock: nobody moved the account since we read it.
        let put = if seen.seq == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("#seq = :seen")
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":seen", n(seen.seq))
        };
        // No `ALL_OLD` here: reusing the returned account to skip the re-read
        // was measured slower on a hot account (losers retried at once and
        // crowded the winner; docs/benchmarks.md, "One hot account").
        wrap_put(put)
    }

    /// A put that only creates: `attribute_not_exists(pk)`, returning the
    /// existing item when it fails.
    fn guarded_put(&self, item: AttrMap) -> Result<TransactWriteItem, LedgerError> {
        wrap_put(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                ),
        )
    }

    /// The entry and today's balance of an already-applied once-key.
    async fn read_marker_outcome(&self, once: &OnceKey) -> Result<Option<Applied>, LedgerError> {
        let Some(marker) = self.get_item(once.pk(), ONCE_SK).await? else {
            return Ok(None);
        };
        let key = once.pk();
        let user = crate::item::get_s(&marker, "user", &key)?;
        let user = UserId::parse(user).map_err(|_| LedgerError::corrupt(&key, "bad user"))?;
        let seq = get_u64(&marker, "seq", &key)?;
        let entry = self
            .read_entry(&user, seq)
            .await?
            .ok_or_else(|| LedgerError::corrupt(&key, "marker points at a missing entry"))?;
        let balance = self.read_account(&user).await?.balance;
        Ok(Some(Applied { entry, balance }))
    }

    /// Whether `once` has been applied (one `GetItem`).
    pub async fn was_applied(&self, once: &OnceKey) -> Result<bool, LedgerError> {
        Ok(self.get_item(once.pk(), ONCE_SK).await?.is_some())
    }
}

fn reason_code(reasons: &[CancellationReason], index: usize) -> Option<&str> {
    reasons.get(index).and_then(|r| r.code())
}

fn wrap_put(
    put: aws_sdk_dynamodb::types::builders::PutBuilder,
) -> Result<TransactWriteItem, LedgerError> {
    let put = put
        .build()
        .map_err(|e| LedgerError::corrupt("transaction", e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Deterministic per (change, account version, attempt): the SDK's resend of
/// one attempt (the very same request) is recognised by DynamoDB as the same
/// transaction; every new attempt is a new one. Caller items are rebuilt per
/// attempt (an idempotency record gets a fresh `createdAt`), and DynamoDB
/// answers `IdempotentParameterMismatch` to a token reused with different
/// items, so a retry at an unchanged `seq` must not reuse the token.
fn request_token(mutation_id: &str, seen_seq: u64, attempt: u32) -> String {
    let digest = Sha256::digest(format!("{mutation_id}:{seen_seq}:{attempt}").as_bytes());
    let mut token = hex::encode(digest);
    token.truncate(36);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_fit_dynamodb_and_differ_per_attempt() {
        let a = request_token("m1", 3, 0);
        assert_eq!(a.len(), 36);
        assert_eq!(a, request_token("m1", 3, 0));
        assert_ne!(a, request_token("m1", 4, 0));
        assert_ne!(a, request_token("m2", 3, 0));
        // A retry that finds the account unchanged is still a new transaction.
        assert_ne!(a, request_token("m1", 3, 1));
    }
}
