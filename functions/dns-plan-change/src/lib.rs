//! `POST /api/dns/subscription/change` `{"planId": "pro"}`: an upgrade
//! applies now with the prorated difference charged atomically (402 short);
//! a downgrade takes effect at the next renewal; the current plan is 409.
//! The rules are `billing::dns::change`.

use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, json_body, respond, views,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChangeBody {
    plan_id: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        if req.method().as_str() != "POST" {
            return Err(ApiError::new(
                405,
                "Method not allowed",
                "method_not_allowed",
            ));
        }
        let body: ChangeBody = json_body(&req)?;
        let now = time::OffsetDateTime::now_utc();
        let changed =
            billing::dns::change_plan(&deps.ledger, &caller.user, &body.plan_id, now).await?;
        Ok::<_, ApiError>(ApiResponse::ok(json!({
            "success": true,
            "subscription": views::subscription(&changed.subscription),
            "balance": changed.balance,
            "charged": changed.charged,
            "change": if changed.upgrade { "upgrade" } else { "downgrade" },
        })))
    })
    .await
}
