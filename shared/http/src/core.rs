use crate::Auth;
use billing_config::Secrets;
use ledger::Ledger;
use std::sync::Arc;

/// What every function needs, built once per cold start: the secret cache,
/// token verification and the ledger (one DynamoDB client).
pub struct Core {
    pub secrets: Arc<Secrets>,
    pub auth: Auth,
    pub ledger: Ledger,
}

impl Core {
    /// From the environment: `BILLING_TABLE`, `DYNAMODB_ENDPOINT` (local),
    /// `JWT_SECRET_ARN` or `BILLING_JWT_SECRET`.
    pub async fn from_env() -> Core {
        let sdk = billing_config::load_aws_config().await;
        let ledger = billing::events::watch_low_balance(
            Ledger::new(
                billing_config::dynamo_client(&sdk),
                billing_config::table_name(),
            ),
            billing::events::low_balance_threshold(),
        );
        let secrets = Arc::new(Secrets::new());
        Core {
            auth: Auth::new(secrets.clone()),
            secrets,
            ledger,
        }
    }

    /// For tests: a given ledger and a fixed JWT secret.
    pub fn new(ledger: Ledger, jwt_secret: &str) -> Core {
        Core {
            secrets: Arc::new(Secrets::new()),
            auth: Auth::with_secret(jwt_secret),
            ledger,
        }
    }
}
