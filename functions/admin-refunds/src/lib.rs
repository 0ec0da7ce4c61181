//! `POST /api/admin/refunds` (role `admin`): refund a PayPal purchase, full
//! or partial, and take back the credits or tokens it bought (policy in
//! `billing::refunds`).

use billing::Reason;
use billing::idempotency::{Existing, IdempotencyKey, StoredResponse};
use billing::refunds::{AdminRefund, MAX_NOTE_TO_PAYER, admin_refund};
use billing_http::{
    ApiError, ApiResponse, Body, Error, Request, Response, idempotency_key, json_body, respond,
};
use billing_http::{PaymentDeps, valid_order_id};
use billing_money::Usd;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    #[serde(rename = "orderId")]
    order_id: String,
    amount: Option<Usd>,
    reason: String,
    #[serde(rename = "noteToPayer")]
    note_to_payer: Option<String>,
    #[serde(default)]
    force: bool,
}

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let admin = deps.base.auth.admin(&req).await?;
        let body: RefundBody = json_body(&req)?;
        let order_id = valid_order_id(&body.order_id)?.to_owned();
        let reason = Reason::parse(&body.reason)?;
        let note_to_payer = match body.note_to_payer.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(note) if note.chars().count() > MAX_NOTE_TO_PAYER => {
                return Err(ApiError::bad_request(format!(
                    "noteToPayer must be at most {MAX_NOTE_TO_PAYER} characters"
                )));
            }
            Some(note) => Some(note.to_owned()),
        };
        let canonical = format!(
            "{order_id}|{}|{}|{}|{}",
            body.amount.map(|a| a.to_string()).unwrap_or_default(),
            reason.as_str(),
            body.force,
            note_to_payer.as_deref().unwrap_or_default()
        );
        // Required: a refund retried after a lost answer must reuse the same
        // PayPal-Request-Id, or PayPal would refund twice.
        let key = idempotency_key(&req)?
            .map(|k| IdempotencyKey::new(&admin.user, &k, "admin-refunds", &canonical))
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key header is required for refunds")
            })?;
        match key.lookup(&deps.base.ledger).await? {
            Some(Existing::Replay(stored)) => {
                return Ok(ApiResponse::with_status(stored.status, stored.body));
            }
            Some(Existing::InProgress) => {
                return Err(billing::BillingError::IdempotencyInProgress.into());
            }
            None => {}
        }
        let request = AdminRefund {
            order_id,
            amount: body.amount,
            reason,
            note_to_payer,
            admin_id: admin.user.as_str().to_owned(),
            force: body.force,
            request_key: key.derived_id(),
        };
        let paypal = deps.paypal().await?;
        let outcome =
            admin_refund(&deps.base.ledger, paypal, deps.virtfusion().await, request).await?;
        let mut response = json!({
            "success": true,
            "refundId": outcome.refund_id,
            "orderId": outcome.order_id,
            "amount": outcome.amount,
            "status": outcome.status.as_str(),
        });
        if let Some(balance) = outcome.balance {
            response["balance"] = json!(balance);
        }
        if let Some(revoked) = outcome.tokens_revoked {
            response["tokensRevoked"] = json!(revoked);
        }
        if let Some(reason) = &outcome.review_reason {
            response["reviewReason"] = json!(reason);
        }
        let stored = StoredResponse {
            status: 200,
            body: response.clone(),
        };
        if let Some(Existing::Replay(first)) = key.store(&deps.base.ledger, &stored).await? {
            return Ok(ApiResponse::with_status(first.status, first.body));
        }
        Ok::<_, ApiError>(ApiResponse::ok(response))
    })
    .await
}
