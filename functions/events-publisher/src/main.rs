use events_publisher_fn::{Deps, handle};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await?;
    run(service_fn(|event| handle(&deps, event))).await
}
