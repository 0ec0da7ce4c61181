use admin_refunds_fn::handle;
use billing_http::checkout::CheckoutDeps;
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = CheckoutDeps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
