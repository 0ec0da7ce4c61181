//! `GET /api/dns/plans`: the active DNS plans, cheapest first.

use billing_http::{ApiResponse, Body, Core, Error, Request, Response, respond, views};
use serde_json::json;

/// Everything this function needs is the shared core (built once per cold start).
pub type Deps = Core;

pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        deps.auth.caller(&req).await?;
        let plans = billing::dns::list_active_plans(&deps.ledger).await?;
        let plans: Vec<_> = plans.iter().map(views::dns_plan).collect();
        Ok(ApiResponse::ok(json!({ "plans": plans })))
    })
    .await
}
