//! `POST /api/admin/users/{id}/virtfusion-tokens` and
//! `DELETE /api/admin/users/{id}/virtfusion-tokens/{creditId}` (role
//! `admin`): grant VirtFusion tokens to a user, or take a grant back, with a
//! reason and a required `Idempotency-Key` (rules in `billing::admin_tokens`).

use billing::Reason;
use billing::admin_tokens::{self, GrantRequest, RemovalRequest, credit_id, grant_tokens};
use billing::idempotency::IdempotencyKey;
use billing_http::{
    ApiError, ApiResponse, BaseDeps, Body, Caller, Error, Request, Response, idempotency_key,
    json_body, path_param, respond,
};
use ledger::UserId;
use serde::Deserialize;
use tokio::sync::OnceCell;
use virtfusion::VirtFusionClient;

pub struct Deps {
    pub base: BaseDeps,
    /// Built at the first request that needs it (its secret is fetched then).
    virtfusion: OnceCell<VirtFusionClient>,
}

impl Deps {
    pub async fn from_env() -> Deps {
        Deps {
            base: BaseDeps::from_env().await,
            virtfusion: OnceCell::new(),
        }
    }

    pub fn new(base: BaseDeps, virtfusion: Option<VirtFusionClient>) -> Deps {
        Deps {
            base,
            virtfusion: OnceCell::new_with(virtfusion),
        }
    }

    /// `None` when VirtFusion is not configured (answered 503, nothing sent).
    async fn virtfusion(&self) -> Option<&VirtFusionClient> {
        self.virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.base.secrets))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "VirtFusion client not configured"))
            .ok()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    tokens: i64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemovalBody {
    reason: String,
}

pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let admin = deps.base.auth.admin(&req).await?;
        let target = path_param(&req, "id")
            .and_then(|id| UserId::parse(&id).ok())
            .ok_or_else(|| ApiError::bad_request("user id in the path is invalid"))?;
        let key = idempotency_key(&req)?.ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key header is required for token changes")
        })?;
        let response = match (req.method().as_str(), path_param(&req, "creditId")) {
            ("POST", None) => grant(deps, &req, &admin, target, &key).await?,
            ("DELETE", Some(credit)) => remove(deps, &req, &admin, target, &credit, &key).await?,
            _ => {
                return Err(ApiError::new(
                    405,
                    "Method not allowed",
                    "method_not_allowed",
                ));
            }
        };
        Ok(ApiResponse::with_status(response.status, response.body))
    })
    .await
}

async fn grant(
    deps: &Deps,
    req: &Request,
    admin: &Caller,
    target: UserId,
    key: &str,
) -> Result<billing::idempotency::StoredResponse, ApiError> {
    let body: GrantBody = json_body(req)?;
    let request = GrantRequest {
        target,
        admin_id: admin.user.as_str().to_owned(),
        tokens: grant_tokens(body.tokens)?,
        reason: Reason::parse(&body.reason)?,
    };
    let key = IdempotencyKey::new(
        &admin.user,
        key,
        "admin-virtfusion-tokens-grant",
        &request.canonical(),
    );
    let virtfusion = deps.virtfusion().await;
    Ok(admin_tokens::grant(&deps.base.ledger, virtfusion, &request, &key).await?)
}

async fn remove(
    deps: &Deps,
    req: &Request,
    admin: &Caller,
    target: UserId,
    credit: &str,
    key: &str,
) -> Result<billing::idempotency::StoredResponse, ApiError> {
    let credit_id = credit_id(credit)?;
    let body: RemovalBody = json_body(req)?;
    let request = RemovalRequest {
        target,
        admin_id: admin.user.as_str().to_owned(),
        credit_id,
        reason: Reason::parse(&body.reason)?,
    };
    let key = IdempotencyKey::new(
        &admin.user,
        key,
        "admin-virtfusion-tokens-remove",
        &request.canonical(),
    );
    let virtfusion = deps.virtfusion().await;
    Ok(admin_tokens::remove(&deps.base.ledger, virtfusion, &request, &key).await?)
}
