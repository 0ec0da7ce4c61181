use lambda_runtime::{Error, run, service_fn};
use renewal_worker_fn::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await;
    run(service_fn(|event| handle(&deps, event))).await
}
