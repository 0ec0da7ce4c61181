use dns_seed_fn::{Deps, handle};
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    billing_config::init_tracing();
    let deps = Deps::from_env().await?;
    // Local stack: `dns-seed --seed-now` writes the default plans and exits.
    if std::env::args().nth(1).as_deref() == Some("--seed-now") {
        let written = billing::dns::seed_default_plans(&deps.ledger).await?;
        println!("DNS plans seeded ({written:?})");
        return Ok(());
    }
    run(service_fn(|event| handle(&deps, event))).await
}
