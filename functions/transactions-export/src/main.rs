use billing_http::BaseDeps;
use lambda_http::{Error, run, service_fn};
use transactions_export_fn::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = BaseDeps::from_env().await;
    run(service_fn(|req| handle(&deps, req))).await
}
