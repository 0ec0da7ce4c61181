//! `GET /api/dns/plans`: the active DNS plans, cheapest first.

use billing_http::{ApiResponse, BaseDeps, Body, Error, Request, Response, respond, views};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        deps.auth.caller(&req).await?;
        let plans = billing::dns::list_active_plans(&deps.ledger).await?;
        let plans: Vec<_> = plans.iter().map(views::dns_plan).collect();
        Ok(ApiResponse::ok(json!({ "plans": plans })))
    })
    .await
}
