use lambda_http::{Error, run, service_fn};
use transaction_detail_fn::{Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
