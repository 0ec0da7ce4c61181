//! `GET | POST | DELETE /api/admin/users/{id}/custom-credits` (role `admin`):
//! read a user's credits, add or remove credits with a reason.

use billing::Reason;
use billing::admin::{AdminChange, Direction, admin_amount};
use billing::history::parse_limit;
use billing::idempotency::IdempotencyKey;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Caller, Error, Request, Response, idempotency_key,
    json_body, path_param, query_param, respond, views,
};
use billing_money::Usd;
use ledger::{EntryCursor, UserId};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    amount: Usd,
    reason: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let admin = deps.auth.admin(&req).await?;
        let target = path_param(&req, "id")
            .and_then(|id| UserId::parse(&id).ok())
            .ok_or_else(|| ApiError::bad_request("user id in the path is invalid"))?;
        match req.method().as_str() {
            "GET" => read(deps, &req, &target).await,
            "POST" => change(deps, &req, admin, target, Direction::Add).await,
            "DELETE" => change(deps, &req, admin, target, Direction::Remove).await,
            _ => Err(ApiError::new(
                405,
                "Method not allowed",
                "method_not_allowed",
            )),
        }
    })
    .await
}

async fn read(deps: &BaseDeps, req: &Request, target: &UserId) -> Result<ApiResponse, ApiError> {
    let limit = parse_limit(query_param(req, "limit").as_deref())?;
    let cursor = match query_param(req, "cursor") {
        Some(text) => Some(
            EntryCursor::decode(&text).ok_or_else(|| ApiError::bad_request("cursor is invalid"))?,
        ),
        None => None,
    };
    let ledger = &deps.ledger;
    let (balance, page) = tokio::join!(
        ledger.balance(target),
        ledger.entries(target, limit, cursor)
    );
    let (balance, page) = (balance?, page?);
    let transactions: Vec<_> = page
        .entries
        .iter()
        .map(|e| views::credit_entry(e, true))
        .collect();
    Ok(ApiResponse::ok(json!({
        "balance": balance,
        "formatted": balance.formatted(),
        "transactions": transactions,
        "nextCursor": page.next.map(|c| c.encode()),
    })))
}

async fn change(
    deps: &BaseDeps,
    req: &Request,
    admin: Caller,
    target: UserId,
    direction: Direction,
) -> Result<ApiResponse, ApiError> {
    let body: ChangeBody = json_body(req)?;
    let change = AdminChange {
        target,
        admin_id: admin.user.as_str().to_owned(),
        amount: admin_amount(body.amount)?,
        reason: Reason::parse(&body.reason)?,
        direction,
    };
    let key = idempotency_key(req)?.map(|key| {
        IdempotencyKey::new(
            &admin.user,
            &key,
            "admin-custom-credits",
            &change.canonical(),
        )
    });
    let response = billing::admin::apply(&deps.ledger, &change, key.as_ref()).await?;
    Ok(ApiResponse::with_status(response.status, response.body))
}
