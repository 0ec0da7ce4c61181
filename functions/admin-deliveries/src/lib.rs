//! `GET /api/admin/virtfusion-deliveries?status=needs_review|pending` and
//! `POST /api/admin/virtfusion-deliveries/{orderId}/resolve` (role `admin`).
//! The review list also holds admin token grants and removals whose outcome
//! is uncertain (`vfgrant-…` ids, `billing::admin_tokens`), resolved here too.

use billing::Reason;
use billing::admin_tokens::{self, GRANT_PREFIX};
use billing::deliveries::{self, ReviewItem};
use billing::orders::{Delivery, OrderRecord};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, json_body, path_param,
    query_param, respond, valid_order_id, views,
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// Whether VirtFusion shows a credit of this purchase or grant.
    delivered: bool,
    /// That credit's id (VirtFusion's admin shows it): lets the system
    /// remove it later, or now if it holds more than is owed.
    #[serde(default, rename = "creditId")]
    credit_id: Option<u64>,
    reason: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let admin = deps.auth.admin(&req).await?;
        match path_param(&req, "orderId") {
            None => {
                let state = match query_param(&req, "status").as_deref() {
                    None | Some("needs_review") => Delivery::NeedsReview,
                    Some("pending") => Delivery::Pending,
                    Some(_) => {
                        return Err(ApiError::bad_request(
                            "status must be needs_review or pending",
                        ));
                    }
                };
                let found = deliveries::list_items(&deps.ledger, state, 100).await?;
                let items: Vec<Value> = found
                    .iter()
                    .map(|item| match item {
                        ReviewItem::Order(order) => view(order),
                        ReviewItem::Grant(grant) => views::token_grant(grant),
                    })
                    .collect();
                Ok(ApiResponse::ok(json!({ "items": items })))
            }
            Some(order_id) => {
                let order_id = valid_order_id(&order_id)?;
                let body: ResolveBody = json_body(&req)?;
                let reason = Reason::parse(&body.reason)?;
                let found = match (body.delivered, body.credit_id) {
                    (false, Some(_)) => {
                        return Err(ApiError::bad_request(
                            "creditId is only given with \"delivered\": true",
                        ));
                    }
                    (_, Some(0)) => {
                        return Err(ApiError::bad_request(
                            "creditId must be a positive whole number",
                        ));
                    }
                    (false, None) => deliveries::Found::Nothing,
                    (true, credit_id) => deliveries::Found::Credit(credit_id),
                };
                if order_id.starts_with(GRANT_PREFIX) {
                    let grant = admin_tokens::resolve(
                        &deps.ledger,
                        order_id,
                        found,
                        admin.user.as_str(),
                        &reason,
                    )
                    .await?;
                    return Ok(ApiResponse::ok(
                        json!({ "success": true, "delivery": views::token_grant(&grant) }),
                    ));
                }
                let order = deliveries::resolve(
                    &deps.ledger,
                    order_id,
                    found,
                    admin.user.as_str(),
                    &reason,
                )
                .await?;
                Ok(ApiResponse::ok(
                    json!({ "success": true, "delivery": view(&order) }),
                ))
            }
        }
    })
    .await
}

fn view(order: &OrderRecord) -> Value {
    json!({
        "orderId": order.order_id,
        "userId": order.user.as_str(),
        "tokens": order.tokens.map(|t| t.get()),
        "amount": order.captured_amount.unwrap_or(order.amount),
        "captureId": order.capture_id,
        "status": order.delivery.map(|d| d.as_str()),
        "reviewReason": order.review_reason,
        "refundedAmount": order.refunded_amount,
        "owedTokens": order.owed_tokens().get(),
        "creditId": order.credit_id,
        "createdAt": order.created_at,
    })
}
