//! `GET /api/billing/transactions/export?from=YYYY-MM-DD&to=YYYY-MM-DD`:
//! the caller's history of both systems in the range (at most 366 days) as
//! a CSV attachment. Bad dates answer 400 with the usual JSON error.

use billing::history::export::{ExportRange, export_csv};
use billing_http::{
    ApiError, BaseDeps, Body, Error, FileResponse, Request, Response, query_param, respond_file,
};

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond_file(&req, async {
        let caller = deps.auth.caller(&req).await?;
        let range = ExportRange::parse(
            query_param(&req, "from").as_deref(),
            query_param(&req, "to").as_deref(),
        )?;
        let body = export_csv(&deps.ledger, &caller.user, range).await?;
        Ok::<_, ApiError>(FileResponse {
            content_type: "text/csv; charset=utf-8",
            filename: range.filename(),
            body,
        })
    })
    .await
}
