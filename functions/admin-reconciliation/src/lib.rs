//! `GET /api/admin/reconciliation` (the latest runs and the open mismatches)
//! and `POST /api/admin/reconciliation/{mismatchId}/resolve` (role `admin`).

use billing::Reason;
use billing::reconcile;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Error, Request, Response, json_body, path_param, respond,
};
use serde::Deserialize;
use serde_json::json;

/// Runs listed, newest first.
const RUNS: u32 = 10;
/// Open mismatches listed, oldest first.
const MISMATCHES: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    reason: String,
}

pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let admin = deps.auth.admin(&req).await?;
        match path_param(&req, "mismatchId") {
            None => {
                let (runs, open) = reconcile::overview(&deps.ledger, RUNS, MISMATCHES).await?;
                Ok(ApiResponse::ok(
                    json!({ "runs": runs, "openMismatches": open }),
                ))
            }
            Some(id) => {
                let id = reconcile::parse_mismatch_id(&id)
                    .ok_or_else(|| ApiError::bad_request("mismatchId is malformed"))?;
                let body: ResolveBody = json_body(&req)?;
                let reason = Reason::parse(&body.reason)?;
                let mismatch =
                    reconcile::resolve(&deps.ledger, id, admin.user.as_str(), &reason).await?;
                Ok(ApiResponse::ok(
                    json!({ "success": true, "mismatch": mismatch }),
                ))
            }
        }
    })
    .await
}
