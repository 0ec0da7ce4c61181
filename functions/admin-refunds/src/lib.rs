//! `POST /api/admin/refunds` (role `admin`): refund a PayPal purchase, full
//! or partial, and take back the credits or tokens it bought (policy in
//! `billing::refunds`).

use billing::Reason;
use billing::refunds::{AdminRefund, MAX_NOTE_TO_PAYER, admin_refund};
use billing_http::{
    ApiError, ApiResponse, Body, Error, Request, Response, idempotency_key, json_body, respond,
};
use billing_http::{PaymentDeps, valid_order_id};
use billing_money::Usd;
use serde::Deserialize;

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
        let request = AdminRefund {
            order_id,
            amount: body.amount,
            reason,
            note_to_payer,
            admin_id: admin.user.as_str().to_owned(),
            force: body.force,
        };
        // Required: a refund retried after a lost answer must reach PayPal
        // with the same PayPal-Request-Id, or PayPal would refund twice.
        let key = idempotency_key(&req)?
            .map(|k| request.key(&admin.user, &k))
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key header is required for refunds")
            })?;
        let paypal = deps.paypal().await?;
        let response = admin_refund(
            &deps.base.ledger,
            paypal,
            deps.virtfusion().await,
            &key,
            request,
        )
        .await?;
        Ok::<_, ApiError>(ApiResponse::with_status(response.status, response.body))
    })
    .await
}
