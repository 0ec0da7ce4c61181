//! `POST /api/dns/plans/{planId}/purchase`: debits the plan's price and
//! creates the subscription in one transaction. 402 short balance, 409
//! already subscribed, 404 unknown or inactive plan; nothing changes on any
//! failure.

use billing_http::{ApiResponse, Body, Core, Error, Request, Response, path_param, respond, views};
use serde_json::json;

pub struct Deps {
    pub core: Core,
}

impl Deps {
    pub async fn from_env() -> Deps {
        Deps {
            core: Core::from_env().await,
        }
    }
}

pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.core.auth.caller(&req).await?;
        // A malformed plan id names no plan: 404 like an unknown one.
        let plan_id = path_param(&req, "planId").unwrap_or_default();
        let now = time::OffsetDateTime::now_utc();
        let purchased =
            billing::dns::purchase(&deps.core.ledger, &caller.user, &plan_id, now).await?;
        Ok(ApiResponse::ok(json!({
            "success": true,
            "subscription": views::dns_subscription(&purchased.subscription),
            "balance": purchased.balance,
        })))
    })
    .await
}
