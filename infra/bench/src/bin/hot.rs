//! `./infra/bench.sh hot`: one hot account, the backoff shapes side by
//! side in one run — 32 writers sustained for 400 credits, then a burst of 64
//! concurrent debits — optionally while `BENCH_BUSY=N` threads spin on the
//! CPU (a busy machine). Prints a Markdown table for docs/benchmarks.md.
//!
//! `./infra/bench.sh hot-sweep` (`hot sweep`): the default backoff only, at
//! `HOT_SWEEP_WRITERS` concurrent writers (default 1,2,4,8,16,32,64), each a
//! sustained run of `HOT_SWEEP_CHANGES` credits (default 400) on a fresh
//! account. Prints a Markdown table and writes `$BENCH_OUT_DIR/hot_sweep.json`
//! (default `.local/bench`), which `infra/charts.py hot-sweep` draws.

use aws_sdk_dynamodb::Client;
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

#[path = "../json_out.rs"]
mod json_out;
use json_out::{Value, load_average, now_utc};

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

    let sweep_mode = std::env::args().nth(1).as_deref() == Some("sweep");
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

    if sweep_mode {
        sweep(&client, &table, &calls, busy).await;
    } else {
        shapes(&client, &table, &calls, busy).await;
    }
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        let _ = spinner.join();
    }
}

/// The backoff shapes side by side at 32 writers (`./infra/bench.sh hot`).
async fn shapes(client: &Client, table: &str, calls: &DynamoCallCounter, busy: usize) {
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
        let ledger = Arc::new(Ledger::new(client.clone(), table).with_retry_policy(*policy));
        let user = UserId::parse(&format!("hot-{round}")).unwrap_or_else(|e| fail(e));
        let run = sustained(&ledger, &user, WRITERS, SUSTAINED, calls).await;
        let burst = burst(&ledger, round).await;
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {burst} |",
            run.quantiles[0],
            run.quantiles[1],
            run.quantiles[2],
            run.quantiles[3],
            run.changes_per_s,
            run.calls_per_change,
            run.errors,
        );
    }
}

/// The default backoff at 1, 2, 4 … 64 writers, a fresh account each
/// (`./infra/bench.sh hot-sweep`): a table, and JSON for the chart.
async fn sweep(client: &Client, table: &str, calls: &DynamoCallCounter, busy: usize) {
    let changes = std::env::var("HOT_SWEEP_CHANGES")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(400);
    let writers: Vec<usize> = std::env::var("HOT_SWEEP_WRITERS")
        .unwrap_or_else(|_| "1,2,4,8,16,32,64".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|e| fail(e)))
        .collect();
    let policy = RetryPolicy::default();
    let policy_name = format!(
        "{:?} ≤ {} ms, budget {} ms (the default)",
        policy.shape, policy.max_delay_ms, policy.max_elapsed_ms
    );
    let measured_at = now_utc();
    let load_before = load_average();
    println!(
        "### One hot account by concurrency ({changes} credits per writer count, backoff {policy_name}, {busy} busy threads, {measured_at})\n"
    );
    println!(
        "| writers | p50 ms | p90 ms | p99 ms | max ms | changes/s | DynamoDB calls/change | 503 | load avg before → after |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let ledger = Arc::new(Ledger::new(client.clone(), table).with_retry_policy(policy));
    let mut rows = Vec::new();
    for &n in &writers {
        let user = UserId::parse(&format!("sweep-{n}")).unwrap_or_else(|e| fail(e));
        let before = load_average();
        let run = sustained(&ledger, &user, n, changes, calls).await;
        let after = load_average();
        let [p50, p90, p99, max] = run.quantiles;
        println!(
            "| {n} | {p50:.0} | {p90:.0} | {p99:.0} | {max:.0} | {:.0} | {:.2} | {} | {before} → {after} |",
            run.changes_per_s, run.calls_per_change, run.errors,
        );
        rows.push(Value::Obj(vec![
            ("writers", Value::Int(n as u64)),
            ("p50_ms", Value::Num(p50)),
            ("p90_ms", Value::Num(p90)),
            ("p99_ms", Value::Num(p99)),
            ("max_ms", Value::Num(max)),
            ("changes_per_s", Value::Num(run.changes_per_s)),
            ("calls_per_change", Value::Num(run.calls_per_change)),
            ("errors_503", Value::Int(run.errors)),
            // The target: 0 × 503 and p99 ≤ 1 s.
            ("target_met", Value::Bool(run.errors == 0 && p99 <= 1000.0)),
            ("load_before", Value::Str(before)),
            ("load_after", Value::Str(after)),
        ]));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let out = Value::Obj(vec![
        ("bench", Value::Str("hot-sweep".into())),
        ("measured_at", Value::Str(measured_at)),
        ("changes", Value::Int(changes as u64)),
        ("policy", Value::Str(policy_name)),
        ("busy_threads", Value::Int(busy as u64)),
        ("cpus", Value::Int(cpus as u64)),
        ("load_before", Value::Str(load_before)),
        ("load_after", Value::Str(load_average())),
        ("rows", Value::Arr(rows)),
    ]);
    let path = json_out::write("hot_sweep.json", &out).unwrap_or_else(|e| fail(e));
    eprintln!("wrote {}", path.display());
}

/// One sustained run: `writers` tasks credit `user` $1.00 until `changes`
/// changes are done (each counted once, whatever its outcome).
struct Sustained {
    /// p50, p90, p99, max in ms.
    quantiles: [f64; 4],
    changes_per_s: f64,
    calls_per_change: f64,
    /// Changes that ended in an error (out of retry budget: a 503 at the API).
    errors: u64,
}

async fn sustained(
    ledger: &Arc<Ledger>,
    user: &UserId,
    writers: usize,
    changes: usize,
    calls: &DynamoCallCounter,
) -> Sustained {
    calls.reset();
    let errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (ledger, user, errors, next) =
            (ledger.clone(), user.clone(), errors.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < changes {
                let t = Instant::now();
                if ledger.apply(change(&user, "1.00")).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(changes);
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.unwrap_or_else(|e| fail(e)));
    }
    let elapsed = started.elapsed();
    Sustained {
        quantiles: quantiles(&latencies),
        changes_per_s: changes as f64 / elapsed.as_secs_f64(),
        calls_per_change: calls.total() as f64 / changes as f64,
        errors: errors.load(Ordering::Relaxed),
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
