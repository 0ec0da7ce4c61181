//! `GET /api/billing/transactions/{id}`: one of the caller's transactions
//! (an id of the transactions list) with what a receipt shows — its PayPal
//! order, refund, service charge or admin grant. 404 for anyone else's.

use billing::history::detail::transaction;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, path_param, respond, views,
};

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        let id = path_param(&req, "id").unwrap_or_default();
        let detail = transaction(&deps.ledger, &caller.user, &id).await?;
        Ok::<_, ApiError>(ApiResponse::ok(views::transaction_detail(&detail)))
    })
    .await
}
