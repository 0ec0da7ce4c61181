//! DNS plan management (role `admin`): `GET /api/admin/dns/plans` (active
//! and inactive), `POST /api/admin/dns/plans` (409 if the id exists),
//! `PATCH /api/admin/dns/plans/{planId}` (new prices apply from each
//! subscription's next renewal; a deactivated plan is no longer sold).

use billing::dns::{NewPlan, PlanPatch};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, json_body, path_param,
    respond, views,
};
use billing_money::Usd;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    id: String,
    name: String,
    description: String,
    price: Usd,
    domain_limit: u32,
    record_limit: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PatchBody {
    name: Option<String>,
    description: Option<String>,
    price: Option<Usd>,
    domain_limit: Option<u32>,
    record_limit: Option<u32>,
    is_active: Option<bool>,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        deps.auth.admin(&req).await?;
        let ledger = &deps.ledger;
        match (req.method().as_str(), path_param(&req, "planId")) {
            ("GET", None) => {
                let plans = billing::dns::list_all_plans(ledger).await?;
                let plans: Vec<_> = plans.iter().map(views::dns_plan_admin).collect();
                Ok(ApiResponse::ok(json!({ "plans": plans })))
            }
            ("POST", None) => {
                let body: CreateBody = json_body(&req)?;
                let plan = NewPlan {
                    id: body.id,
                    name: body.name,
                    description: body.description,
                    price: body.price,
                    domain_limit: body.domain_limit,
                    record_limit: body.record_limit,
                }
                .validate()?;
                billing::dns::create_plan(ledger, &plan).await?;
                Ok(ApiResponse::ok(
                    json!({ "plan": views::dns_plan_admin(&plan) }),
                ))
            }
            ("PATCH", Some(id)) => {
                let body: PatchBody = json_body(&req)?;
                let patch = PlanPatch {
                    name: body.name,
                    description: body.description,
                    price: body.price,
                    domain_limit: body.domain_limit,
                    record_limit: body.record_limit,
                    active: body.is_active,
                };
                let plan = billing::dns::update_plan(ledger, &id, patch).await?;
                Ok(ApiResponse::ok(
                    json!({ "plan": views::dns_plan_admin(&plan) }),
                ))
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
