//! `./infra/bench.sh renewal-scale` (or `cargo run -p ledger-bench --bin
//! renewal-scale` with `DYNAMODB_ENDPOINT` set): the renewal job fanned out.
//! Fills a table with `RENEWAL_SCALE_SUBS` (default 100,000) due monthly
//! subscriptions (BatchWriteItem: subscription, account with credits for
//! every round, its first entry), then runs one round per worker count in
//! `RENEWAL_SCALE_WORKERS` (default `1,2,4,8`), after `RENEWAL_SCALE_WARMUP`
//! (default 1) untimed rounds with the smallest N (a cold DynamoDB Local JVM
//! made the first timed round twice as slow as the same N later on; 8
//! workers on a cold one left some renewals in error): the
//! coordinator's 17
//! partition messages (16 shards + legacy) go to an in-memory queue and N
//! workers take them, each running `renewal-worker`'s own message path
//! (`renewal_worker_fn::run_message`); an unfinished partition goes back
//! to the queue, as SQS would redeliver it. Each round is a month later, so
//! every subscription is due once per round. Checks after each round that
//! every account was debited exactly once more (Scan of the accounts:
//! `seq` and balance) and prints a Markdown table for docs/benchmarks.md.
//! Writes the rows to `$BENCH_OUT_DIR/renewal_scale.json` (default
//! `.local/bench`) after every round, which `infra/charts.py renewal-scale`
//! draws.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use billing::dns::Deadline;
use billing::subscriptions::fanout::PartitionMessage;
use billing::subscriptions::{Interval, Product, ServiceTerms, Subscription};
use billing_money::Usd;
use ledger::{AttrMap, Ledger, ServiceType, UserId};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::task::JoinSet;

#[path = "../json_out.rs"]
mod json_out;
use json_out::{Value, load_average, now_utc};

#[tokio::main]
async fn main() {
    if billing_config::dynamo_endpoint_override().is_none() {
        eprintln!("set DYNAMODB_ENDPOINT (./infra/bench.sh renewal-scale starts DynamoDB Local)");
        std::process::exit(2);
    }
    // The worker's own logs (JSON on stdout), e.g. `RUST_LOG=error` to see
    // why a renewal was counted as an error.
    if std::env::var_os("RUST_LOG").is_some() {
        billing_config::init_tracing();
    }
    let subs: usize = env_parse("RENEWAL_SCALE_SUBS", 100_000);
    let workers: Vec<usize> = std::env::var("RENEWAL_SCALE_WORKERS")
        .unwrap_or_else(|_| "1,2,4,8".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|e| fail(e)))
        .collect();
    let warmup = env_parse("RENEWAL_SCALE_WARMUP", 1);
    let smallest = workers.iter().copied().min().unwrap_or(1);
    // (workers, timed) per round, warm-up first.
    let schedule: Vec<(usize, bool)> = std::iter::repeat_n((smallest, false), warmup)
        .chain(workers.iter().map(|&n| (n, true)))
        .collect();
    let rounds = schedule.len();
    let sdk = billing_config::load_aws_config().await;
    // Longer timeouts than a Lambda's: on a shared 2-core machine a batch of
    // 25 puts (with their index writes) can take seconds.
    let client = billing_config::dynamo_client_with(&sdk, |b| {
        b.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
    });
    let template =
        devstack::template::Template::load(&devstack::template_path()).unwrap_or_else(|e| fail(e));
    let def = template.table("BillingTable").unwrap_or_else(|e| fail(e));
    let table = format!("bench-renewal-{}", uuid::Uuid::new_v4().simple());
    devstack::tables::create_table(&client, &def, &table)
        .await
        .unwrap_or_else(|e| fail(e));
    let ledger = Ledger::new(client, &table);

    let filled = Instant::now();
    fill(&ledger, subs, rounds).await;
    let fill_s = filled.elapsed().as_secs_f64();
    eprintln!("filled {subs} subscriptions (x3 items) in {fill_s:.1} s");

    println!("### Renewal fanned out: {subs} due subscriptions, 17 partitions\n");
    println!(
        "Fill: {subs} subscriptions + accounts + first entries by BatchWriteItem in {fill_s:.0} s. \
         Each round is one month later (all {subs} due once); N workers take the 17 partition \
         messages. {warmup} untimed warm-up round(s) with N = {smallest} first.\n"
    );
    println!(
        "| workers (N) | wall s | renewals/s | renewed | skipped | errors | redeliveries | every account debited once more | load avg before → after |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    let worker_deps = Arc::new(renewal_worker_fn::Deps::new(ledger.clone()));
    let measured_at = now_utc();
    let partitions = PartitionMessage::all(round_clock(0)).len();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut rows = Vec::new();
    for (round, &(n, timed)) in schedule.iter().enumerate() {
        let now = round_clock(round);
        let load_before = load_average();
        let started = Instant::now();
        let totals = run_round(&worker_deps, now, n).await;
        let wall = started.elapsed().as_secs_f64();
        let load_after = load_average();
        let (checked, wrong) = check_accounts(&ledger, round as u64 + 2, rounds, round).await;
        let exact = wrong == 0 && checked == subs && totals.renewed == subs as u64;
        if !timed {
            eprintln!(
                "warm-up round: N = {n}, {wall:.1} s, renewed {} skipped {} errors {} \
                 redeliveries {}, {wrong} of {checked} accounts wrong",
                totals.renewed, totals.skipped, totals.errors, totals.redeliveries
            );
            if !exact {
                fail("the warm-up round did not renew every subscription exactly once");
            }
            continue;
        }
        println!(
            "| {n} | {wall:.1} | {:.0} | {} | {} | {} | {} | {} | {load_before} → {load_after} |",
            totals.renewed as f64 / wall.max(0.001),
            totals.renewed,
            totals.skipped,
            totals.errors,
            totals.redeliveries,
            if wrong == 0 && checked == subs && totals.renewed == subs as u64 {
                format!("yes ({checked} accounts)")
            } else {
                format!("NO: {wrong} of {checked} accounts wrong")
            }
        );
        rows.push(Value::Obj(vec![
            ("workers", Value::Int(n as u64)),
            ("wall_s", Value::Num(wall)),
            (
                "renewals_per_s",
                Value::Num(totals.renewed as f64 / wall.max(0.001)),
            ),
            ("renewed", Value::Int(totals.renewed)),
            ("skipped", Value::Int(totals.skipped)),
            ("errors", Value::Int(totals.errors)),
            ("redeliveries", Value::Int(totals.redeliveries)),
            ("accounts_checked", Value::Int(checked as u64)),
            ("accounts_wrong", Value::Int(wrong as u64)),
            ("exact", Value::Bool(exact)),
            ("load_before", Value::Str(load_before.clone())),
            ("load_after", Value::Str(load_after.clone())),
        ]));
        let out = Value::Obj(vec![
            ("bench", Value::Str("renewal-scale".into())),
            ("measured_at", Value::Str(measured_at.clone())),
            ("subs", Value::Int(subs as u64)),
            ("partitions", Value::Int(partitions as u64)),
            ("fill_s", Value::Num(fill_s)),
            ("warmup_rounds", Value::Int(warmup as u64)),
            ("cpus", Value::Int(cpus as u64)),
            // Rebuilt each round: rows so far (a failed round still leaves them).
            ("rows", Value::Arr(rows.clone())),
        ]);
        match json_out::write("renewal_scale.json", &out) {
            Ok(path) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("renewal_scale.json not written: {e}"),
        }
        if !exact {
            std::process::exit(1);
        }
    }
}

#[derive(Default)]
struct Totals {
    renewed: u64,
    skipped: u64,
    errors: u64,
    redeliveries: u64,
}

/// Round r's clock: month r+1 after the start, one hour after the due times.
fn round_clock(round: usize) -> OffsetDateTime {
    let month = time::Month::January.nth_next(u8::try_from(round + 1).unwrap_or(1));
    datetime!(2025-01-10 01:00 UTC)
        .replace_month(month)
        .unwrap_or_else(|e| fail(e))
}

async fn run_round(deps: &Arc<renewal_worker_fn::Deps>, now: OffsetDateTime, n: usize) -> Totals {
    let queue: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(
        PartitionMessage::all(now)
            .iter()
            .map(PartitionMessage::to_body)
            .collect(),
    ));
    let totals = Arc::new(Mutex::new(Totals::default()));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (deps, queue, totals) = (deps.clone(), queue.clone(), totals.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(body) = next else { break };
                // A Lambda invocation's budget: 120 s, pages stop 10 s before.
                let deadline = Deadline::before(
                    tokio::time::Instant::now() + Duration::from_secs(120),
                    Duration::from_secs(10),
                );
                let result = renewal_worker_fn::run_message(
                    &deps,
                    &body,
                    OffsetDateTime::now_utc(),
                    deadline,
                )
                .await;
                let Ok(mut totals) = totals.lock() else {
                    return;
                };
                match result {
                    Ok(summary) => {
                        totals.renewed += summary.renewed;
                        totals.skipped += summary.skipped;
                        totals.errors += summary.errors;
                    }
                    Err(failed) => {
                        eprintln!("redelivered: {failed:?}");
                        totals.redeliveries += 1;
                        if let Ok(mut q) = queue.lock() {
                            q.push_back(body);
                        }
                    }
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| fail(e));
    }
    Arc::try_unwrap(totals)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default()
}

/// Every account: `seq` = `want_seq` and the balance left for the rounds to come.
async fn check_accounts(
    ledger: &Ledger,
    want_seq: u64,
    rounds: usize,
    round: usize,
) -> (usize, usize) {
    let want_balance =
        Usd::from_cents(100 * (rounds - round - 1) as i64).unwrap_or_else(|e| fail(e));
    let mut checked = 0;
    let mut wrong = 0;
    let mut start: Option<AttrMap> = None;
    loop {
        let out = ledger
            .client()
            .scan()
            .table_name(ledger.table())
            .filter_expression("sk = :credits")
            .expression_attribute_values(":credits", AttributeValue::S("CREDITS".into()))
            .projection_expression("balance, seq")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap_or_else(|e| fail(e));
        for item in out.items() {
            checked += 1;
            let seq = match item.get("seq") {
                Some(AttributeValue::N(n)) => n.parse::<u64>().unwrap_or(0),
                _ => 0,
            };
            let balance = match item.get("balance") {
                Some(AttributeValue::N(n)) => billing_money::parse_usd_literal(n).ok(),
                _ => None,
            };
            if seq != want_seq || balance != Some(want_balance) {
                wrong += 1;
            }
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    (checked, wrong)
}

/// Subscriptions due on 2025-02-10 between 00:00 and 00:50 (month after
/// month), each with an account holding $1.00 per round and its first entry.
async fn fill(ledger: &Ledger, subs: usize, rounds: usize) {
    let price = Usd::from_cents(100).unwrap_or_else(|e| fail(e));
    let funds = Usd::from_cents(100 * rounds as i64).unwrap_or_else(|e| fail(e));
    let service = ServiceType::parse("dedicated_server").unwrap_or_else(|| fail("service type"));
    let created = "2025-01-09T00:00:00.000Z";
    let mut items = Vec::with_capacity(subs * 3);
    for i in 0..subs {
        let user = UserId::parse(&format!("rs{i}")).unwrap_or_else(|e| fail(e));
        let start = datetime!(2025-01-10 00:00 UTC) + time::Duration::seconds((i % 3000) as i64);
        let sub = Subscription::start(
            user.clone(),
            Product::Service(ServiceTerms {
                service_type: service.clone(),
                service_id: format!("srv-{i}"),
                description: "bench server".into(),
            }),
            price,
            Interval::Month,
            start,
        )
        .unwrap_or_else(|e| fail(e));
        items.push(sub.to_item());
        let mut account = AttrMap::new();
        account.insert("pk".into(), s(user.pk()));
        account.insert("sk".into(), s(ledger::keys::ACCOUNT_SK));
        account.insert("balance".into(), money(funds));
        account.insert("seq".into(), num(1));
        account.insert("updatedAt".into(), s(created));
        items.push(account);
        let mut entry = AttrMap::new();
        entry.insert("pk".into(), s(user.pk()));
        entry.insert("sk".into(), s(ledger::keys::entry_sk(1)));
        entry.insert("seq".into(), num(1));
        entry.insert("kind".into(), s("admin_credit"));
        entry.insert("amount".into(), money(funds));
        entry.insert("balanceBefore".into(), money(Usd::ZERO));
        entry.insert("balanceAfter".into(), money(funds));
        entry.insert("description".into(), s("bench funds"));
        entry.insert("createdAt".into(), s(created));
        entry.insert("mutationId".into(), s(format!("bench-{i}")));
        items.push(entry);
    }
    let mut tasks = JoinSet::new();
    let chunks: Vec<Vec<AttrMap>> = items.chunks(25).map(<[_]>::to_vec).collect();
    for chunk in chunks {
        if tasks.len() >= 4
            && let Some(done) = tasks.join_next().await
        {
            done.unwrap_or_else(|e| fail(e));
        }
        let (client, name) = (ledger.client().clone(), ledger.table().to_owned());
        tasks.spawn(async move {
            let mut requests: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(item))
                                .build()
                                .unwrap_or_else(|e| fail(e)),
                        )
                        .build()
                })
                .collect();
            for attempt in 0..20u64 {
                // A busy machine: a timed-out batch is sent again (puts are idempotent).
                match client
                    .batch_write_item()
                    .request_items(&name, requests.clone())
                    .send()
                    .await
                {
                    Ok(out) => {
                        requests = out
                            .unprocessed_items
                            .and_then(|mut u| u.remove(&name))
                            .unwrap_or_default();
                    }
                    Err(e) => eprintln!(
                        "batch write retried: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e)
                    ),
                }
                if requests.is_empty() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
            }
            fail("unprocessed items remained");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| fail(e));
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn num(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// As the ledger stores money: a number from its exact decimal text.
fn money(value: Usd) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn env_parse(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn fail(error: impl std::fmt::Display) -> ! {
    eprintln!("renewal-scale bench failed: {error}");
    std::process::exit(1)
}
