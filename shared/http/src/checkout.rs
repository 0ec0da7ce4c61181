//! The four PayPal checkout routes differ only in what they buy, so their
//! handlers are written once here (parse, authorize, call
//! `billing::checkout`, map); each function crate names its kind.

use crate::{ApiResponse, PaymentDeps, idempotency_key, json_body, respond, valid_order_id};
use billing::checkout;
use billing::orders::PurchaseKind;
use billing_money::Usd;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    amount: Usd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    #[serde(rename = "orderId")]
    order_id: String,
}

/// `POST /api/billing/{custom-credits|virtfusion-tokens}/add`.
pub async fn handle_order(
    deps: &PaymentDeps,
    req: Request,
    kind: PurchaseKind,
) -> Result<Response<Body>, lambda_http::Error> {
    respond(&req, async {
        let caller = deps.base.auth.caller(&req).await?;
        let body: OrderBody = json_body(&req)?;
        let key = idempotency_key(&req)?;
        let paypal = deps.paypal().await?;
        let response = checkout::order_route(
            &deps.base.ledger,
            paypal,
            deps.limits,
            &caller.user,
            kind,
            body.amount,
            key.as_deref(),
        )
        .await?;
        Ok(ApiResponse::with_status(response.status, response.body))
    })
    .await
}

/// `POST /api/billing/{custom-credits|virtfusion-tokens}/capture`.
pub async fn handle_capture(
    deps: &PaymentDeps,
    req: Request,
    kind: PurchaseKind,
) -> Result<Response<Body>, lambda_http::Error> {
    respond(&req, async {
        let caller = deps.base.auth.caller(&req).await?;
        let body: CaptureBody = json_body(&req)?;
        let order_id = valid_order_id(&body.order_id)?;
        let paypal = deps.paypal().await?;
        let response = checkout::capture_route(
            &deps.base.ledger,
            paypal,
            deps.virtfusion_for(kind).await,
            &caller.user,
            kind,
            order_id,
        )
        .await?;
        Ok(ApiResponse::with_status(response.status, response.body))
    })
    .await
}
