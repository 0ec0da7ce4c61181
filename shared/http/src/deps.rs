//! What a function holds between requests, built once per cold start.

use crate::{ApiError, Auth};
use billing::checkout::TopUpLimits;
use billing::orders::PurchaseKind;
use billing_config::Secrets;
use ledger::Ledger;
use paypal::PayPalClient;
use std::sync::Arc;
use tokio::sync::OnceCell;
use virtfusion::VirtFusionClient;

/// The dependencies every function has: the secret cache, token verification
/// and the ledger (one DynamoDB client). A function that needs nothing else
/// takes `&BaseDeps` as its deps.
pub struct BaseDeps {
    pub secrets: Arc<Secrets>,
    pub auth: Auth,
    pub ledger: Ledger,
}

impl BaseDeps {
    /// From the environment: `BILLING_TABLE`, `DYNAMODB_ENDPOINT` (local),
    /// `JWT_SECRET_ARN` or `BILLING_JWT_SECRET`.
    pub async fn from_env() -> BaseDeps {
        let sdk = billing_config::load_aws_config().await;
        let ledger = billing::events::watch_low_balance(
            Ledger::new(
                billing_config::dynamo_client(&sdk),
                billing_config::table_name(),
            ),
            billing::events::low_balance_threshold(),
        );
        let secrets = Arc::new(Secrets::new());
        BaseDeps {
            auth: Auth::new(secrets.clone()),
            secrets,
            ledger,
        }
    }

    /// For tests: a given ledger and a fixed JWT secret.
    pub fn new(ledger: Ledger, jwt_secret: &str) -> BaseDeps {
        BaseDeps {
            secrets: Arc::new(Secrets::new()),
            auth: Auth::with_secret(jwt_secret),
            ledger,
        }
    }
}

/// The dependencies of the functions that move PayPal money (checkout,
/// admin refunds, the PayPal webhook): [`BaseDeps`], the top-up limits, and
/// the PayPal and VirtFusion clients, built at the first request that needs
/// them (their secrets are fetched then).
pub struct PaymentDeps {
    pub base: BaseDeps,
    pub limits: TopUpLimits,
    paypal: OnceCell<PayPalClient>,
    virtfusion: OnceCell<VirtFusionClient>,
}

impl PaymentDeps {
    pub async fn from_env() -> PaymentDeps {
        PaymentDeps {
            base: BaseDeps::from_env().await,
            limits: TopUpLimits::from_env(),
            paypal: OnceCell::new(),
            virtfusion: OnceCell::new(),
        }
    }

    pub fn new(
        base: BaseDeps,
        paypal: PayPalClient,
        virtfusion: Option<VirtFusionClient>,
    ) -> PaymentDeps {
        PaymentDeps {
            base,
            limits: TopUpLimits::default(),
            paypal: OnceCell::new_with(Some(paypal)),
            virtfusion: OnceCell::new_with(virtfusion),
        }
    }

    pub async fn paypal(&self) -> Result<&PayPalClient, ApiError> {
        self.paypal
            .get_or_try_init(|| paypal::from_env(&self.base.secrets))
            .await
            .map_err(|e| ApiError::internal(format!("PayPal client: {e}")))
    }

    /// `None` when VirtFusion is not configured: deliveries stay pending.
    pub async fn virtfusion(&self) -> Option<&VirtFusionClient> {
        self.virtfusion
            .get_or_try_init(|| virtfusion::from_env(&self.base.secrets))
            .await
            .inspect_err(|e| tracing::error!(error = %e, "VirtFusion client not configured"))
            .ok()
    }

    /// VirtFusion if settling `kind` talks to it (its client is not built
    /// for a purchase that never does).
    pub async fn virtfusion_for(&self, kind: PurchaseKind) -> Option<&VirtFusionClient> {
        if kind.delivers_to_virtfusion() {
            self.virtfusion().await
        } else {
            None
        }
    }
}
