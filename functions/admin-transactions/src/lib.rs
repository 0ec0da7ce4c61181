//! `GET /api/admin/transactions?limit=N&cursor=C&from=&to=&type=` (role
//! `admin`): every user's custom-credit entries, newest first, read through
//! the day index (`billing::history::admin`), never a Scan.

use billing::history::admin::{AdminCursor, admin_entries, admin_filter};
use billing::history::parse_limit;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, query_param, respond, views,
};
use serde_json::json;

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        deps.auth.admin(&req).await?;
        let limit = parse_limit(query_param(&req, "limit").as_deref())?;
        let cursor = query_param(&req, "cursor")
            .map(|c| AdminCursor::decode(&c))
            .transpose()?;
        let (filter, start) = admin_filter(
            query_param(&req, "from").as_deref(),
            query_param(&req, "to").as_deref(),
            query_param(&req, "type").as_deref(),
            cursor.as_ref(),
            time::OffsetDateTime::now_utc().date(),
        )?;
        let page = admin_entries(&deps.ledger, &filter, start, limit).await?;
        let items: Vec<_> = page.items.iter().map(views::admin_entry).collect();
        Ok::<_, ApiError>(ApiResponse::ok(json!({
            "items": items,
            "nextCursor": page.next.map(|c| c.encode()),
        })))
    })
    .await
}
