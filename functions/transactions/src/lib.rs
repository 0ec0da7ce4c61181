//! `GET /api/billing/transactions?limit=N&cursor=C`: both money systems,
//! merged newest first, cursor-paginated.

use billing::history::{HistoryCursor, history, parse_limit};
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, query_param, respond, views,
};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.auth.caller(&req).await?;
        let limit = parse_limit(query_param(&req, "limit").as_deref())?;
        let cursor = query_param(&req, "cursor")
            .map(|c| HistoryCursor::decode(&c))
            .transpose()?;
        let page = history(&deps.ledger, &caller.user, limit, cursor).await?;
        let items: Vec<_> = page.items.iter().map(views::history_item).collect();
        Ok::<_, ApiError>(ApiResponse::ok(json!({
            "items": items,
            "nextCursor": page.next.map(|c| c.encode()),
        })))
    })
    .await
}
