//! `./infra/bench.sh hot`: one hot account, the backoff shapes side by
//! side in one run — 32 writers sustained for 400 credits, then a burst of 64
//! concurrent debits — optionally while `BENCH_BUSY=N` threads spin on the
//! CPU (a busy machine). Prints a Markdown table for docs/benchmarks.md.

use billing_money::Usd;
use ledger::{
    BackoffShape, Change, ChangeOutcome, DynamoCallCounter, EntryDetails, EntryKind, Ledger,
    LedgerError, RetryPolicy, UserId,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 32;
const SUSTAINED: usize = 400;
const BURST: usize = 64;

#[tokio::main]
async fn main() {
    if billing_config::dynamo_endpoint_override().is_none() {
        eprintln!("set DYNAMODB_ENDPOINT (./infra/bench.sh hot starts DynamoDB Local for you)");
        std::process::exit(2);
    }
    let busy = std::env::var("BENCH_BUSY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..busy)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();

    let sdk = billing_config::load_aws_config().await;
    let calls = DynamoCallCounter::default();
    let counter = calls.clone();
    let client = billing_config::dynamo_client_with(&sdk, move |b| b.interceptor(counter));
    let template =
        devstack::template::Template::load(&devstack::template_path()).unwrap_or_else(|e| fail(e));
    let def = template.table("BillingTable").unwrap_or_else(|e| fail(e));
    let table = format!("bench-hot-{}", uuid::Uuid::new_v4().simple());
    devstack::tables::create_table(&client, &def, &table)
        .await
        .unwrap_or_else(|e| fail(e));

    let before = RetryPolicy {
        max_delay_ms: 640,
        shape: BackoffShape::Exponential,
        ..RetryPolicy::default()
    };
    let with = |max_delay_ms, shape| RetryPolicy {
        max_delay_ms,
        shape,
        ..RetryPolicy::default()
    };
    let policies = [
        ("exponential, ≤ 640 ms (before)".to_string(), before),
        (
            "rounds, ≤ 2560 ms (the default)".to_string(),
            RetryPolicy::default(),
        ),
        (
            "rounds, ≤ 640 ms".to_string(),
            with(640, BackoffShape::Rounds),
        ),
        (
            "oldest first, ≤ 640 ms, age step 1 s".to_string(),
            with(640, BackoffShape::OldestFirst { age_step_ms: 1000 }),
        ),
    ];
    println!(
        "### One hot account ({WRITERS} writers, {SUSTAINED} credits sustained; burst of {BURST} debits; {busy} busy threads)\n"
    );
    println!(
        "| backoff | p50 ms | p90 ms | p99 ms | max ms | changes/s | DynamoDB calls/change | 503 | burst: applied / 402 / 503, balance |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (round, (name, policy)) in policies.iter().enumerate() {
        let ledger = Arc::new(Ledger::new(client.clone(), &table).with_retry_policy(*policy));
        let user = UserId::parse(&format!("hot-{round}")).unwrap_or_else(|e| fail(e));
        calls.reset();
        let errors = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let (ledger, user, errors, next) =
                (ledger.clone(), user.clone(), errors.clone(), next.clone());
            workers.spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < SUSTAINED {
                    let t = Instant::now();
                    if ledger.apply(change(&user, "1.00")).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::with_capacity(SUSTAINED);
        while let Some(done) = workers.join_next().await {
            latencies.extend(done.unwrap_or_else(|e| fail(e)));
        }
        let elapsed = started.elapsed();
        let calls_per_change = calls.total() as f64 / SUSTAINED as f64;
        let burst = burst(&ledger, round).await;
        let q = quantiles(&latencies);
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {calls_per_change:.2} | {} | {burst} |",
            q[0],
            q[1],
            q[2],
            q[3],
            SUSTAINED as f64 / elapsed.as_secs_f64(),
            errors.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        let _ = spinner.join();
    }
}

/// 64 concurrent $3.00 debits against $100.00: exactly 33 apply, 31 are short.
async fn burst(ledger: &Arc<Ledger>, round: usize) -> String {
    let user = UserId::parse(&format!("burst-{round}")).unwrap_or_else(|e| fail(e));
    ledger
        .apply(change(&user, "100.00"))
        .await
        .unwrap_or_else(|e| fail(e));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (ledger, user) = (ledger.clone(), user.clone());
        tasks.spawn(async move { ledger.apply(change(&user, "-3.00")).await });
    }
    let (mut applied, mut short, mut other) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap_or_else(|e| fail(e)) {
            Ok(ChangeOutcome::Applied(_)) => applied += 1,
            Err(LedgerError::InsufficientBalance { .. }) => short += 1,
            _ => other += 1,
        }
    }
    let balance = ledger.balance(&user).await.unwrap_or_else(|e| fail(e));
    format!("{applied} / {short} / {other}, ${balance}")
}

fn change(user: &UserId, amount: &str) -> Change {
    let amount: Usd = amount.parse().unwrap_or_else(|e| fail(e));
    let kind = if amount.is_negative() {
        EntryKind::AdminDebit
    } else {
        EntryKind::AdminCredit
    };
    Change::new(user.clone(), amount, EntryDetails::new(kind, "bench"))
}

/// p50, p90, p99 and max in milliseconds (nearest rank).
fn quantiles(latencies: &[Duration]) -> [f64; 4] {
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    [at(0.5), at(0.9), at(0.99), at(1.0)]
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("bench failed: {e}");
    std::process::exit(1)
}
