//! Platform service charges (role `service` or `admin`):
//! `POST /api/services/charges`, `GET /api/services/charges/{chargeId}`,
//! `POST /api/services/charges/{chargeId}/refund`. Every POST requires an
//! `Idempotency-Key` (400 without one). The rules are
//! `billing::services::charges`.

use billing::idempotency::StoredResponse;
use billing::services::charges::{self, ChargeRequest, RefundRequest};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Caller, Error, Request, Response, idempotency_key,
    json_body, path_param, respond, views,
};
use billing_money::Usd;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChargeBody {
    user_id: String,
    amount: Usd,
    service_type: String,
    service_id: String,
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    #[serde(default)]
    amount: Option<Usd>,
    reason: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.service(&req).await?;
        let charge_id = path_param(&req, "chargeId");
        let refund = req.uri().path().trim_end_matches('/').ends_with("/refund");
        match (req.method().as_str(), charge_id, refund) {
            ("POST", None, false) => create(deps, &req, &caller).await,
            ("GET", Some(id), false) => read(deps, &id).await,
            ("POST", Some(id), true) => refund_charge(deps, &req, &caller, &id).await,
            _ => Err(ApiError::new(
                405,
                "Method not allowed",
                "method_not_allowed",
            )),
        }
    })
    .await
}

fn required_key(req: &Request) -> Result<String, ApiError> {
    idempotency_key(req)?.ok_or_else(|| {
        ApiError::new(
            400,
            "Idempotency-Key header is required",
            "idempotency_key_required",
        )
    })
}

fn success(charge: &billing::services::Charge, balance: Usd) -> StoredResponse {
    StoredResponse {
        status: 200,
        body: json!({ "success": true, "charge": views::charge(charge), "balance": balance }),
    }
}

async fn create(deps: &BaseDeps, req: &Request, caller: &Caller) -> Result<ApiResponse, ApiError> {
    let key = required_key(req)?;
    let body: ChargeBody = json_body(req)?;
    let prepared = charges::prepare_charge(
        &caller.user,
        &key,
        ChargeRequest {
            user_id: body.user_id,
            amount: body.amount,
            service_type: body.service_type,
            service_id: body.service_id,
            description: body.description,
        },
    )?;
    let response = charges::charge(&deps.ledger, prepared, |charge, preview| {
        success(charge, preview.balance_after)
    })
    .await?;
    Ok(ApiResponse::with_status(response.status, response.body))
}

async fn read(deps: &BaseDeps, id: &str) -> Result<ApiResponse, ApiError> {
    let charge = charges::get(&deps.ledger, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Charge"))?;
    Ok(ApiResponse::ok(json!({ "charge": views::charge(&charge) })))
}

async fn refund_charge(
    deps: &BaseDeps,
    req: &Request,
    caller: &Caller,
    id: &str,
) -> Result<ApiResponse, ApiError> {
    let key = required_key(req)?;
    let body: RefundBody = json_body(req)?;
    let response = charges::refund(
        &deps.ledger,
        &caller.user,
        id,
        &key,
        RefundRequest {
            amount: body.amount,
            reason: body.reason,
        },
        |charge, preview| success(charge, preview.balance_after),
    )
    .await?;
    Ok(ApiResponse::with_status(response.status, response.body))
}
