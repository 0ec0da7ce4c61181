//! Real PayPal capture behaviours the stand-in plays on demand (hooked into
//! `orders.rs`'s capture handler):
//!
//! - **Funding declines** ([`Decline`]): capture answers 422 with
//!   `details[0].issue` `INSTRUMENT_DECLINED`, `PAYER_ACTION_REQUIRED`,
//!   `REDIRECT_PAYER_FOR_ALTERNATE_FUNDING` or `TRANSACTION_REFUSED` (Orders v2
//!   `orders.capture-422`). The order goes back to needing the buyer's
//!   approval, and the 422 is **stored under its `PayPal-Request-Id`** and
//!   replayed to a repeat of that id, as PayPal may: a caller that retries
//!   with the same id after the buyer approved again stays wedged.
//! - **Concurrent requests with one `PayPal-Request-Id`** ([`InFlight`]):
//!   PayPal "processes the first request and might fail the second" sent
//!   simultaneously. While a capture with a request id is being processed
//!   (its answer held for the configured processing time), another capture
//!   with the same id answers 409 `RESOURCE_CONFLICT` /
//!   `PREVIOUS_REQUEST_IN_PROGRESS` (the shape Payments v2 documents); once
//!   the first is answered, the id replays its answer as usual.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A 422 issue capture can answer when the buyer's funding fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decline {
    InstrumentDeclined,
    PayerActionRequired,
    RedirectPayerForAlternateFunding,
    TransactionRefused,
}

impl Decline {
    pub const ALL: [Decline; 4] = [
        Decline::InstrumentDeclined,
        Decline::PayerActionRequired,
        Decline::RedirectPayerForAlternateFunding,
        Decline::TransactionRefused,
    ];

    pub fn issue(self) -> &'static str {
        match self {
            Decline::InstrumentDeclined => "INSTRUMENT_DECLINED",
            Decline::PayerActionRequired => "PAYER_ACTION_REQUIRED",
            Decline::RedirectPayerForAlternateFunding => "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING",
            Decline::TransactionRefused => "TRANSACTION_REFUSED",
        }
    }

    /// PayPal's description of the issue (Orders v2).
    pub fn description(self) -> &'static str {
        match self {
            Decline::InstrumentDeclined => {
                "The instrument presented was either declined by the processor or bank, or it can't be used for this payment."
            }
            Decline::PayerActionRequired => {
                "Transaction cannot complete successfully, instruct the buyer to return to PayPal."
            }
            Decline::RedirectPayerForAlternateFunding => {
                "Transaction failed. Redirect the payer to select another funding source."
            }
            Decline::TransactionRefused => "The request was refused.",
        }
    }

    pub fn parse(issue: &str) -> Option<Decline> {
        Decline::ALL.into_iter().find(|d| d.issue() == issue)
    }
}

/// Declines queued for the next captures.
#[derive(Debug, Default)]
pub struct Declines {
    next: Option<(Decline, Option<u32>)>,
}

impl Declines {
    /// The next captures (all, or the next `times`) are declined with `decline`;
    /// `None` (or `times: Some(0)`) stops declining.
    pub fn set(&mut self, decline: Option<Decline>, times: Option<u32>) {
        self.next = match (decline, times) {
            (None, _) | (_, Some(0)) => None,
            (Some(decline), times) => Some((decline, times)),
        };
    }

    /// The decline for this capture, if any, counting down.
    pub fn take(&mut self) -> Option<Decline> {
        let (decline, left) = self.next.as_mut()?;
        let decline = *decline;
        if let Some(left) = left {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.next = None;
            }
        }
        Some(decline)
    }
}

/// Request ids being processed, and how long processing takes.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    inner: Arc<Mutex<InFlightState>>,
}

#[derive(Debug, Default)]
struct InFlightState {
    keys: HashSet<String>,
    processing: Duration,
}

/// Holds a request id in flight until dropped (also when the client gives up
/// and the handler is cancelled).
#[derive(Debug)]
pub struct InFlightGuard {
    inner: Arc<Mutex<InFlightState>>,
    key: String,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlightState> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long each capture holds its answer (0: answer at once).
    pub fn set_processing_time(&self, processing: Duration) {
        self.lock().processing = processing;
    }

    pub fn processing_time(&self) -> Duration {
        self.lock().processing
    }

    /// Starts processing `key`; `None` when a request with that key is
    /// still in flight (the caller answers 409).
    pub fn begin(&self, key: &str) -> Option<InFlightGuard> {
        let fresh = self.lock().keys.insert(key.to_owned());
        fresh.then(|| InFlightGuard {
            inner: self.inner.clone(),
            key: key.to_owned(),
        })
    }

    pub fn clear(&self) {
        let mut state = self.lock();
        state.keys.clear();
        state.processing = Duration::ZERO;
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declines_count_down() {
        let mut declines = Declines::default();
        declines.set(Some(Decline::InstrumentDeclined), Some(2));
        assert_eq!(declines.take(), Some(Decline::InstrumentDeclined));
        assert_eq!(declines.take(), Some(Decline::InstrumentDeclined));
        assert_eq!(declines.take(), None);
        assert_eq!(
            Decline::parse("TRANSACTION_REFUSED"),
            Some(Decline::TransactionRefused)
        );
    }

    #[test]
    fn one_request_id_in_flight_at_a_time() {
        let in_flight = InFlight::default();
        let first = in_flight.begin("capture:O:r").unwrap();
        assert!(in_flight.begin("capture:O:r").is_none());
        assert!(in_flight.begin("capture:O:other").is_some());
        drop(first);
        assert!(in_flight.begin("capture:O:r").is_some());
    }
}
