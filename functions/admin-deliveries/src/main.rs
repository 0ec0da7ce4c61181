use admin_deliveries_fn::handle;
use billing_http::BaseDeps;
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = BaseDeps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
