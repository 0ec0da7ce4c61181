use billing_http::PaymentDeps;
use custom_credits_add_fn::handle;
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = PaymentDeps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
