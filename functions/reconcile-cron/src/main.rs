// The handler's future (reconciliation over the PayPal client) nests deeper than rustc's default query depth.
#![recursion_limit = "256"]

use lambda_runtime::{Error, run, service_fn};
use reconcile_cron_fn::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await;
    run(service_fn(|event| handle(&deps, event))).await
}
