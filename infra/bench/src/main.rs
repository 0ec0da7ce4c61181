//! `./infra/bench.sh` (or `cargo run -p ledger-bench --profile bench-local`
//! with `DYNAMODB_ENDPOINT` set): measures the ledger against DynamoDB Local
//! and prints a Markdown report for docs/benchmarks.md.
//!
//! Latency is wall time per `Ledger::apply` as seen by the caller, including
//! conflict retries; DynamoDB calls are counted by an SDK interceptor.

use billing::admin::{AdminChange, Direction};
use billing::idempotency::IdempotencyKey;
use billing_money::Usd;
use ledger::{Change, DynamoCallCounter, EntryDetails, EntryKind, Ledger, UserId};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPS_PER_RUN: usize = 400;

#[tokio::main]
async fn main() {
    if billing_config::dynamo_endpoint_override().is_none() {
        eprintln!("set DYNAMODB_ENDPOINT (./infra/bench.sh starts DynamoDB Local for you)");
        std::process::exit(2);
    }
    let sdk = billing_config::load_aws_config().await;
    let calls = DynamoCallCounter::default();
    let counter = calls.clone();
    let client = billing_config::dynamo_client_with(&sdk, move |b| b.interceptor(counter));
    let template =
        devstack::template::Template::load(&devstack::template_path()).unwrap_or_else(|e| fail(e));
    let def = template.table("BillingTable").unwrap_or_else(|e| fail(e));
    let table = format!("bench-{}", uuid::Uuid::new_v4().simple());
    devstack::tables::create_table(&client, &def, &table)
        .await
        .unwrap_or_else(|e| fail(e));
    let ledger = Arc::new(Ledger::new(client, &table));

    println!("## Ledger (DynamoDB Local, {OPS_PER_RUN} operations per row)\n");
    println!("### DynamoDB calls per operation (counted by an SDK interceptor)\n");
    println!("| operation | calls | by API |\n| --- | --- | --- |");
    let user = UserId::parse("bench-calls").unwrap_or_else(|e| fail(e));
    let one = usd("1.00");
    ledger
        .apply(credit(&user, one))
        .await
        .unwrap_or_else(|e| fail(e));
    for (name, run) in [
        ("balance change (credit)", 0),
        ("balance read", 1),
        ("admin add with Idempotency-Key", 2),
    ] {
        calls.reset();
        match run {
            0 => drop(
                ledger
                    .apply(credit(&user, one))
                    .await
                    .unwrap_or_else(|e| fail(e)),
            ),
            1 => drop(ledger.balance(&user).await.unwrap_or_else(|e| fail(e))),
            _ => keyed_admin_add(&ledger, &user, "calls-key").await,
        }
        println!("| {name} | {} | {:?} |", calls.total(), calls.snapshot());
    }

    println!("\n### Balance change latency (credit of $1.00)\n");
    println!(
        "| accounts | concurrency | p50 ms | p99 ms | max ms | ops/s | DynamoDB calls/op | errors (503) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for hot in [false, true] {
        for concurrency in [1usize, 8, 32] {
            calls.reset();
            let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let hot_user = UserId::parse(&format!("hot-{concurrency}")).unwrap_or_else(|e| fail(e));
            let (latencies, elapsed) = run_concurrent(concurrency, OPS_PER_RUN, {
                let (ledger, errors) = (ledger.clone(), errors.clone());
                move |i| {
                    let (ledger, errors) = (ledger.clone(), errors.clone());
                    let user = if hot {
                        hot_user.clone()
                    } else {
                        UserId::parse(&format!("distinct-{concurrency}-{i}"))
                            .unwrap_or_else(|e| fail(e))
                    };
                    async move {
                        // Under sustained contention a change may exhaust its retry budget (503).
                        if ledger.apply(credit(&user, one)).await.is_err() {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
            .await;
            report_row(
                if hot { "one hot account" } else { "distinct" },
                concurrency,
                &latencies,
                elapsed,
                calls.total() as f64 / OPS_PER_RUN as f64,
                errors.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }

    println!(
        "\n### Admin add: with vs without Idempotency-Key (concurrency 1, distinct accounts)\n"
    );
    println!("| variant | p50 ms | p99 ms | DynamoDB calls/op |\n| --- | --- | --- | --- |");
    for keyed in [false, true] {
        calls.reset();
        let (latencies, _) = run_concurrent(1, OPS_PER_RUN, {
            let ledger = ledger.clone();
            move |i| {
                let ledger = ledger.clone();
                async move {
                    let user =
                        UserId::parse(&format!("admin-{keyed}-{i}")).unwrap_or_else(|e| fail(e));
                    if keyed {
                        keyed_admin_add(&ledger, &user, &format!("key-{i}")).await;
                    } else {
                        let change = admin_change(&user);
                        drop(billing::admin::apply(&ledger, &change, None).await);
                    }
                }
            }
        })
        .await;
        let (p50, p99, _) = percentiles(&latencies);
        println!(
            "| {} | {p50:.2} | {p99:.2} | {:.2} |",
            if keyed { "with key" } else { "without key" },
            calls.total() as f64 / OPS_PER_RUN as f64
        );
    }
}

fn usd(text: &str) -> Usd {
    text.parse().unwrap_or_else(|e| fail(e))
}

fn credit(user: &UserId, amount: Usd) -> Change {
    Change::new(
        user.clone(),
        amount,
        EntryDetails::new(EntryKind::AdminCredit, "bench"),
    )
}

fn admin_change(user: &UserId) -> AdminChange {
    AdminChange {
        target: user.clone(),
        admin_id: "bench-admin".into(),
        amount: usd("1.00"),
        reason: billing::Reason::parse("bench").unwrap_or_else(|e| fail(e)),
        direction: Direction::Add,
    }
}

async fn keyed_admin_add(ledger: &Ledger, user: &UserId, key: &str) {
    let change = admin_change(user);
    let key = IdempotencyKey::new(
        &UserId::parse("bench-admin").unwrap_or_else(|e| fail(e)),
        key,
        "bench",
        &change.canonical(),
    );
    billing::admin::apply(ledger, &change, Some(&key))
        .await
        .unwrap_or_else(|e| fail(e));
}

/// Runs `total` operations with at most `concurrency` in flight; returns each latency.
async fn run_concurrent<F, Fut>(
    concurrency: usize,
    total: usize,
    op: F,
) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break latencies;
                }
                let t = Instant::now();
                op(i).await;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut all = Vec::with_capacity(total);
    while let Some(result) = workers.join_next().await {
        all.extend(result.unwrap_or_else(|e| fail(e)));
    }
    (all, started.elapsed())
}

fn percentiles(latencies: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn report_row(
    accounts: &str,
    concurrency: usize,
    latencies: &[Duration],
    elapsed: Duration,
    calls_per_op: f64,
    errors: u64,
) {
    let (p50, p99, max) = percentiles(latencies);
    let throughput = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "| {accounts} | {concurrency} | {p50:.2} | {p99:.2} | {max:.2} | {throughput:.0} | {calls_per_op:.2} | {errors} |"
    );
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("bench failed: {e}");
    std::process::exit(1)
}
