use billing_http::PaymentDeps;
use lambda_http::{Error, run, service_fn};
use paypal_webhook_fn::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = PaymentDeps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
