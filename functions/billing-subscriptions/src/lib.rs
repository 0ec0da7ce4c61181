//! The caller's own subscriptions: `GET /api/billing/subscriptions` (the
//! DNS plan subscription and every service subscription) and
//! `POST /api/billing/subscriptions/{id}/cancel` (another user's is 404).

use billing::services::subscriptions;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, path_param, respond, views,
};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        match (req.method().as_str(), path_param(&req, "id")) {
            ("GET", None) => {
                let subs = subscriptions::all_of_user(&deps.ledger, &caller.user).await?;
                let items: Vec<_> = subs.iter().map(views::subscription).collect();
                Ok(ApiResponse::ok(json!({ "items": items })))
            }
            ("POST", Some(id)) => {
                let now = time::OffsetDateTime::now_utc();
                let sub =
                    subscriptions::cancel_by_id(&deps.ledger, &id, Some(&caller.user), now).await?;
                Ok(ApiResponse::ok(json!({
                    "success": true,
                    "subscription": views::subscription(&sub),
                })))
            }
            _ => Err(ApiError::new(
                405,
                "Method not allowed",
                "method_not_allowed",
            )),
        }
    })
    .await
}
