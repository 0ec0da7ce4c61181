//! The four PayPal checkout routes differ only in what they buy, so their
//! handlers are written once here; each function crate names its kind.

use crate::{ApiError, ApiResponse, Core, idempotency_key, json_body, respond};
use billing::checkout::{self, TopUpLimits};
use billing::idempotency::IdempotencyKey;
use billing::orders::PurchaseKind;
use billing_money::Usd;
use lambda_http::{Body, Request, Response};
use paypal::PayPalClient;
use serde::Deserialize;
use tokio::sync::OnceCell;
use virtfusion::VirtFusionClient;

/// Dependencies of the checkout functions. PayPal and VirtFusion clients are
/// built at the first request that needs them (their secrets are fetched then).
pub struct CheckoutDeps {
    pub core: Core,
    pub limits: TopUpLimits,
    paypal: OnceCell<PayPalClient>,
    virtfusion: OnceCell<VirtFusionClient>,
}

impl CheckoutDeps {
    pub async fn from_env() -> CheckoutDeps {
        CheckoutDeps {
            core: Core::from_env().await,
            limits: TopUpLimits::from_env(),
            paypal: OnceCell::new(),
            virtfusion: OnceCell::new(),
        }
    }

    pub fn new(
        core: Core,
        paypal: PayPalClient,
        virtfusion: Option<VirtFusionClient>,
    ) -> CheckoutDeps {
        CheckoutDeps {
            core,
            limits: TopUpLimits::default(),
            paypal: OnceCell::new_with(Some(paypal)),
            virtfusion: OnceCell::new_with(virtfusion),
        }
    }

    pub async fn paypal(&self) -> Result<&PayPalClient, ApiError> {
        self.paypal
            .get_or_try_init(|| paypal::from_env(&self.core.secrets))
            .await
            .map_err(|e| ApiError::internal(format!("PayPal client: {e}")))
    }

    /// `None` when VirtFusion is not configured: deliveries stay pending.
    pub async fn virtfusion(&self) -> Option<&VirtFusionClient> {
        self.virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.core.secrets))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "VirtFusion client not configured"))
            .ok()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    amount: Usd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    #[serde(rename = "orderId")]
    order_id: String,
}

/// `POST /api/billing/{custom-credits|virtfusion-tokens}/add`.
pub async fn handle_order(
    deps: &CheckoutDeps,
    req: Request,
    kind: PurchaseKind,
) -> Result<Response<Body>, lambda_http::Error> {
    respond(&req, async {
        let caller = deps.core.auth.caller(&req).await?;
        let body: OrderBody = json_body(&req)?;
        let key = idempotency_key(&req)?.map(|key| {
            IdempotencyKey::new(
                &caller.user,
                &key,
                &format!("order-{}", kind.as_str()),
                &body.amount.to_string(),
            )
        });
        let paypal = deps.paypal().await?;
        let response = checkout::start_order(
            &deps.core.ledger,
            paypal,
            deps.limits,
            &caller.user,
            kind,
            body.amount,
            key.as_ref(),
        )
        .await?;
        Ok(ApiResponse::with_status(response.status, response.body))
    })
    .await
}

/// `POST /api/billing/{custom-credits|virtfusion-tokens}/capture`.
pub async fn handle_capture(
    deps: &CheckoutDeps,
    req: Request,
    kind: PurchaseKind,
) -> Result<Response<Body>, lambda_http::Error> {
    respond(&req, async {
        let caller = deps.core.auth.caller(&req).await?;
        let body: CaptureBody = json_body(&req)?;
        let order_id = valid_order_id(&body.order_id)?;
        let paypal = deps.paypal().await?;
        let virtfusion = match kind {
            PurchaseKind::Tokens => deps.virtfusion().await,
            PurchaseKind::Credits => None,
        };
        let settlement = checkout::capture(
            &deps.core.ledger,
            paypal,
            virtfusion,
            &caller.user,
            kind,
            order_id,
        )
        .await?;
        let response = settlement.response();
        Ok(ApiResponse::with_status(response.status, response.body))
    })
    .await
}

/// PayPal order ids are short alphanumeric strings.
pub fn valid_order_id(raw: &str) -> Result<&str, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(raw)
    } else {
        Err(ApiError::bad_request("orderId is invalid"))
    }
}
