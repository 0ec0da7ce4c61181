//! Test harness: each test gets its own table (created from `template.yaml`)
//! on the one DynamoDB Local that `infra/test.sh` starts, so tests run in
//! parallel without sharing state.

pub mod api;
pub mod dispatch;
pub mod events;
pub mod flows;
pub mod openapi;
pub mod sim;

use aws_sdk_dynamodb::Client;
use ledger::{DynamoCallCounter, Ledger, UserId};
use std::sync::atomic::{AtomicU64, Ordering};

pub use billing_money::Usd;

pub struct TestTable {
    pub client: Client,
    pub name: String,
    /// Counts every DynamoDB call made through `client` (and the functions'
    /// clients: [`TestTable::function_ledger`]).
    pub calls: DynamoCallCounter,
    /// Local IAM: the proxy (in front of DynamoDB Local) through which each
    /// function's client reaches the table, checked against its policy.
    pub iam: devstack::faultproxy::FaultProxy,
    /// What the functions' clients are built from: `client`, pointed at `iam`.
    function_base: Client,
}

/// The function whose credentials the renewal job carries when it runs
/// without a queue (`RENEWAL_QUEUE_URL` unset, as in most tests): it then
/// does the workers' renewals in its own process, which in AWS only
/// `RenewalWorkerFunction` does (its role has the renewals' `BatchGetItem`,
/// the job's has not). With a queue the job signs as itself (`renewal-cron`).
pub const IN_PROCESS_RENEWALS: &str = "renewal-worker";

/// The DynamoDB Local endpoint; `infra/test.sh` starts one and exports it.
pub fn dynamo_endpoint() -> String {
    billing_config::dynamo_endpoint_override().unwrap_or_else(|| {
        panic!(
            "DYNAMODB_ENDPOINT is not set: run the tests with ./infra/test.sh \
             (it starts DynamoDB Local), or export DYNAMODB_ENDPOINT=http://127.0.0.1:<port>"
        )
    })
}

impl TestTable {
    /// A fresh table with the keys and indexes of `BillingTable` in template.yaml.
    pub async fn new() -> TestTable {
        let _ = dynamo_endpoint();
        init_test_logs();
        let sdk = billing_config::load_aws_config().await;
        let calls = DynamoCallCounter::default();
        let counter = calls.clone();
        let client = billing_config::dynamo_client_with(&sdk, move |b| b.interceptor(counter));
        let template = devstack::template::Template::load(&devstack::template_path())
            .expect("template.yaml readable");
        let mut def = template
            .table("BillingTable")
            .expect("BillingTable in template.yaml");
        // Only the events tests read the stream (they turn it on:
        // `events::EventsEnv::new`); the others spare DynamoDB Local its cost.
        def.stream_view = None;
        let name = format!("t-{}", uuid::Uuid::new_v4().simple());
        devstack::tables::create_table(&client, &def, &name)
            .await
            .expect("create test table");
        calls.reset();
        let iam =
            devstack::faultproxy::FaultProxy::spawn(([127, 0, 0, 1], 0).into(), dynamo_endpoint())
                .await
                .expect("local IAM proxy");
        let endpoint = iam.endpoint();
        let function_base =
            Client::from_conf(client.config().to_builder().endpoint_url(endpoint).build());
        TestTable {
            client,
            name,
            calls,
            iam,
            function_base,
        }
    }

    /// The ledger as the function built as `binary` (`renewal-cron`) has it:
    /// its client signs with the function's template logical id, through
    /// [`TestTable::iam`], so every call is checked against its policy.
    pub fn function_ledger(&self, binary: &str) -> Ledger {
        billing::events::watch_low_balance(
            Ledger::new(
                api::function_client(&self.function_base, binary),
                &self.name,
            ),
            billing::events::low_balance_threshold(),
        )
    }

    /// The client the functions' clients are built from (through the IAM proxy).
    pub fn function_base(&self) -> &Client {
        &self.function_base
    }

    /// The ledger as the functions build it (with the low-balance event hook).
    pub fn ledger(&self) -> Ledger {
        billing::events::watch_low_balance(
            Ledger::new(self.client.clone(), &self.name),
            billing::events::low_balance_threshold(),
        )
    }
}

/// Handler logs in the test's output (`RUST_LOG`, default `warn`).
pub fn init_test_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A user id no other test uses.
pub fn new_user() -> UserId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    UserId::parse(&format!("{}{n}", std::process::id())).expect("valid user id")
}

pub fn usd(text: &str) -> Usd {
    text.parse().expect("test amount")
}

/// Fails the test unless the account's chain is sound; returns the balance.
pub async fn assert_audit(ledger: &Ledger, user: &UserId) -> Usd {
    let report = ledger.audit(user).await.expect("audit readable");
    assert!(
        report.is_sound(),
        "ledger audit failed for {user}: {:?}",
        report.problems
    );
    report.balance
}
