//! Platform service subscriptions (role `service` or `admin`):
//! `POST /api/services/subscriptions` (first period charged and the
//! subscription created atomically; `Idempotency-Key` required),
//! `GET /api/services/subscriptions?userId=U&serviceType=T&limit=N&cursor=C`,
//! `POST /api/services/subscriptions/{id}/cancel` (`Idempotency-Key`
//! required like every POST of these routes; cancelling is idempotent by
//! nature, so a retry answers the cancelled subscription again).

use billing::history::parse_limit;
use billing::idempotency::StoredResponse;
use billing::services::subscriptions::{self, SubscribeRequest};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Caller, Error, Request, Response, idempotency_key,
    json_body, path_param, query_param, respond, views,
};
use billing_money::Usd;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SubscribeBody {
    user_id: String,
    service_type: String,
    service_id: String,
    price: Usd,
    interval: String,
    description: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.service(&req).await?;
        match (req.method().as_str(), path_param(&req, "id")) {
            ("POST", None) => create(deps, &req, &caller).await,
            ("GET", None) => list(deps, &req).await,
            ("POST", Some(id)) => cancel(deps, &req, &id).await,
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

async fn create(deps: &BaseDeps, req: &Request, caller: &Caller) -> Result<ApiResponse, ApiError> {
    let key = required_key(req)?;
    let body: SubscribeBody = json_body(req)?;
    let now = time::OffsetDateTime::now_utc();
    let prepared = subscriptions::prepare(
        &deps.ledger,
        &caller.user,
        &key,
        SubscribeRequest {
            user_id: body.user_id,
            service_type: body.service_type,
            service_id: body.service_id,
            price: body.price,
            interval: body.interval,
            description: body.description,
        },
        now,
    )
    .await?;
    let response =
        subscriptions::subscribe(&deps.ledger, prepared, |sub, preview| StoredResponse {
            status: 200,
            body: json!({
                "success": true,
                "subscription": views::subscription(sub),
                "balance": preview.balance_after,
            }),
        })
        .await?;
    Ok(ApiResponse::with_status(response.status, response.body))
}

async fn list(deps: &BaseDeps, req: &Request) -> Result<ApiResponse, ApiError> {
    let user_id =
        query_param(req, "userId").ok_or_else(|| ApiError::bad_request("userId is required"))?;
    let limit = parse_limit(query_param(req, "limit").as_deref())?;
    let page = subscriptions::list(
        &deps.ledger,
        &user_id,
        query_param(req, "serviceType").as_deref(),
        limit,
        query_param(req, "cursor").as_deref(),
    )
    .await?;
    let items: Vec<_> = page.items.iter().map(views::subscription).collect();
    Ok(ApiResponse::ok(
        json!({ "items": items, "nextCursor": page.next }),
    ))
}

async fn cancel(deps: &BaseDeps, req: &Request, id: &str) -> Result<ApiResponse, ApiError> {
    required_key(req)?;
    let now = time::OffsetDateTime::now_utc();
    let sub = subscriptions::cancel_by_id(&deps.ledger, id, None, now).await?;
    Ok(ApiResponse::ok(json!({
        "success": true,
        "subscription": views::subscription(&sub),
    })))
}
