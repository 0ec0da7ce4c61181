//! `GET /api/dns/plans`: the active DNS plans, cheapest first.

use billing_http::{ApiResponse, Body, Core, Error, Request, Response, respond, views};
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
        deps.core.auth.caller(&req).await?;
        let plans = billing::dns::list_active_plans(&deps.core.ledger).await?;
        let plans: Vec<_> = plans.iter().map(views::dns_plan).collect();
        Ok(ApiResponse::ok(json!({ "plans": plans })))
    })
    .await
}
