use admin_virtfusion_tokens_fn::{Deps, handle};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
