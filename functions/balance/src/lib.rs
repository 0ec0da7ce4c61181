//! `GET /api/billing/balance`: custom credits (ledger) and VirtFusion tokens,
//! fetched concurrently. VirtFusion down → still 200, `available: false`.

use billing_http::{ApiResponse, BaseDeps, Body, Error, Request, Response, respond, views};
use billing_money::TokenBalance;
use ledger::UserId;
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

    pub fn new(base: BaseDeps, virtfusion: VirtFusionClient) -> Deps {
        Deps {
            base,
            virtfusion: OnceCell::new_with(Some(virtfusion)),
        }
    }

    /// The user's tokens, or `None` when VirtFusion cannot answer.
    async fn tokens(&self, user: &UserId) -> Option<TokenBalance> {
        let client = self
            .virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.base.secrets))
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "virtfusion not configured"))
            .ok()?;
        client
            .token_balance(user.as_str())
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "virtfusion balance unavailable"))
            .ok()
    }
}

pub async fn handle(deps: &Deps, req: Request) -> Result<Response<Body>, Error> {
    respond(&req, async {
        let caller = deps.base.auth.caller(&req).await?;
        let view = billing::balance::balance_view(
            &deps.base.ledger,
            &caller.user,
            deps.tokens(&caller.user),
        )
        .await?;
        Ok(ApiResponse::ok(views::balance(&view)))
    })
    .await
}
