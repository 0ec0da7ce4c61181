//! `GET /api/dns/subscription` (the caller's subscription or null) and
//! `POST /api/dns/subscription/cancel` (auto-renew off; active until
//! `nextRenewalDate`).

use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Caller, Error, Request, Response, respond, views,
};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        let cancel = req.uri().path().trim_end_matches('/').ends_with("/cancel");
        match (req.method().as_str(), cancel) {
            ("GET", false) => read(deps, &caller).await,
            ("POST", true) => cancel_subscription(deps, &caller).await,
            _ => Err(ApiError::new(
                405,
                "Method not allowed",
                "method_not_allowed",
            )),
        }
    })
    .await
}

async fn read(deps: &BaseDeps, caller: &Caller) -> Result<ApiResponse, ApiError> {
    let subscription = billing::dns::get_subscription(&deps.ledger, &caller.user).await?;
    Ok(ApiResponse::ok(json!({
        "subscription": subscription.as_ref().map(views::dns_subscription),
    })))
}

async fn cancel_subscription(deps: &BaseDeps, caller: &Caller) -> Result<ApiResponse, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let subscription = billing::dns::cancel(&deps.ledger, &caller.user, now).await?;
    Ok(ApiResponse::ok(json!({
        "success": true,
        "subscription": views::dns_subscription(&subscription),
    })))
}
