//! DynamoDB's `ClientRequestToken` rule, which DynamoDB Local does not
//! check: the same token reused with different `TransactItems` within ten
//! minutes is refused with `IdempotentParameterMismatchException`. The proxy
//! checks it for every `TransactWriteItems` it sees (forwarded or answered
//! with an injected fault, which stands for an answer of DynamoDB's).

use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// DynamoDB's client-token window.
const TOKEN_WINDOW: Duration = Duration::from_secs(600);

#[derive(Default)]
pub(super) struct TokenBook {
    /// `ClientRequestToken` → the `TransactItems` first sent with it.
    first: HashMap<String, (Value, Instant)>,
}

impl TokenBook {
    /// True when `body` reuses a token with other items.
    pub(super) fn reused_with_other_items(&mut self, operation: &str, body: &[u8]) -> bool {
        if operation != "TransactWriteItems" {
            return false;
        }
        let Ok(request) = serde_json::from_slice::<Value>(body) else {
            return false;
        };
        let Some(token) = request.get("ClientRequestToken").and_then(Value::as_str) else {
            return false;
        };
        let items = request.get("TransactItems").cloned().unwrap_or(Value::Null);
        let now = Instant::now();
        self.first
            .retain(|_, (_, at)| now.duration_since(*at) < TOKEN_WINDOW);
        match self.first.get(token) {
            Some((first, _)) => *first != items,
            None => {
                self.first.insert(token.to_owned(), (items, now));
                false
            }
        }
    }
}
