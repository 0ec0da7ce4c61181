//! `POST /api/dns/plans/{planId}/purchase`: debits the plan's price and
//! creates the subscription in one transaction. 402 short balance, 409
//! already subscribed, 404 unknown or inactive plan; nothing changes on any
//! failure.

use billing::idempotency::{Existing, IdempotencyKey, StoredResponse, apply_with_key};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, idempotency_key, path_param,
    respond, views,
};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        let ledger = &deps.ledger;
        // A malformed plan id names no plan: 404 like an unknown one.
        let plan_id = path_param(&req, "planId").unwrap_or_default();
        let key = idempotency_key(&req)?
            .map(|key| IdempotencyKey::new(&caller.user, &key, "dns-purchase", &plan_id));
        let now = time::OffsetDateTime::now_utc();
        let prepared =
            match billing::dns::prepare_purchase(ledger, &caller.user, &plan_id, now).await {
                Ok(prepared) => prepared,
                Err(refused) => {
                    // A retry of a purchase that went through now looks "already
                    // subscribed": answer it with the first response instead.
                    if let Some(key) = &key
                        && let Some(Existing::Replay(first)) = key.lookup(ledger).await?
                    {
                        return Ok(ApiResponse::with_status(first.status, first.body));
                    }
                    return Err(refused.into());
                }
            };
        let change = prepared.to_ledger_change(ledger.table())?;
        let subscription = views::dns_subscription(&prepared.subscription);
        let response = apply_with_key(
            ledger,
            change,
            key.as_ref(),
            move |preview| StoredResponse {
                status: 200,
                body: json!({
                    "success": true,
                    "subscription": subscription,
                    "balance": preview.balance_after,
                }),
            },
            billing::dns::purchase_refusal,
        )
        .await?;
        Ok::<_, ApiError>(ApiResponse::with_status(response.status, response.body))
    })
    .await
}
