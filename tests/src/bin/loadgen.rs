//! `loadgen`: a bounded load test of the local stack (run by infra/load.sh).
//!
//! Three scenarios, each a fixed number of requests at a fixed concurrency:
//!
//! * `GET /api/billing/balance` by `--users` users in turn;
//! * `POST /api/admin/users/{id}/custom-credits` (`"1.00"` each) to the same users;
//! * `POST /api/dns/plans/basic/purchase`, one per fresh user, each funded
//!   with exactly the plan's price first (the funding is not timed).
//!
//! Prints throughput, p50/p90/p99/max latency and the errors (transport
//! failures and unexpected statuses) of each, then audits every account it
//! touched straight from DynamoDB (`Ledger::audit`: the chain is sound) and
//! checks the balances it expects (credits: 1.00 per acknowledged add; DNS
//! users: 0.00 after their purchase). Exits non-zero on any error or failed
//! audit. Latencies are floats; money never is.

use billing_http::jwt::{Claims, sign};
use billing_money::Usd;
use ledger::{Ledger, UserId};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Options {
    api: String,
    table: String,
    secret: String,
    requests: usize,
    concurrency: usize,
    users: usize,
    purchases: usize,
    plan: String,
    /// Other accounts to audit: every entry of theirs is a 1.00 admin add.
    audit_users: Vec<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut options = Options {
            api: "http://127.0.0.1:3000".into(),
            table: std::env::var("BILLING_TABLE").unwrap_or_else(|_| "billing".into()),
            secret: std::env::var("BILLING_JWT_SECRET")
                .unwrap_or_else(|_| "local-dev-secret".into()),
            requests: 2000,
            concurrency: 8,
            users: 50,
            purchases: 300,
            plan: "basic".into(),
            audit_users: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(name) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{name} needs a value"));
            let number = |text: String| {
                text.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: not a positive number: {text}"))
            };
            match name.as_str() {
                "--api" => options.api = value()?,
                "--table" => options.table = value()?,
                "--requests" => options.requests = number(value()?)?,
                "--concurrency" => options.concurrency = number(value()?)?,
                "--users" => options.users = number(value()?)?,
                "--purchases" => options.purchases = number(value()?)?,
                "--plan" => options.plan = value()?,
                "--audit-user" => options.audit_users.push(value()?),
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(options)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn token(secret: &str, sub: &str, admin: bool) -> String {
    let now = unix_now();
    let roles = if admin { vec!["admin".into()] } else { vec![] };
    sign(
        &Claims {
            sub: sub.into(),
            roles,
            exp: now + 6 * 3600,
            nbf: None,
            iat: None,
        },
        secret.as_bytes(),
    )
}

/// One request to make.
#[derive(Clone)]
struct Call {
    method: reqwest::Method,
    path: String,
    token: String,
    body: Option<String>,
    /// The status that counts as success.
    expect: u16,
    /// Whose account this request touches (for the audit).
    user: usize,
}

#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Per `calls` index: the status (0: transport error).
    statuses: Vec<u16>,
}

/// Makes every call, `concurrency` at a time, and times each.
async fn run(client: &reqwest::Client, api: &str, calls: Vec<Call>, concurrency: usize) -> Outcome {
    let calls = Arc::new(calls);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (calls, next, client, api) = (
            Arc::clone(&calls),
            Arc::clone(&next),
            client.clone(),
            api.to_owned(),
        );
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else { break };
                let mut request = client
                    .request(call.method.clone(), format!("{api}{}", call.path))
                    .header("authorization", format!("Bearer {}", call.token));
                if let Some(body) = &call.body {
                    request = request
                        .header("content-type", "application/json")
                        .body(body.clone());
                }
                let sent = Instant::now();
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the body: the request is done when it has arrived.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                done.push((i, status, sent.elapsed()));
            }
            done
        }));
    }
    let mut outcome = Outcome {
        statuses: vec![0; calls.len()],
        ..Outcome::default()
    };
    for worker in workers {
        for (i, status, latency) in worker.await.unwrap_or_default() {
            outcome.statuses[i] = status;
            outcome.latencies.push(latency);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort();
    outcome
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Prints the scenario's Markdown row; returns its error count.
fn report(name: &str, calls: &[Call], outcome: &Outcome, concurrency: usize) -> usize {
    let mut unexpected: BTreeMap<u16, usize> = BTreeMap::new();
    for (call, status) in calls.iter().zip(&outcome.statuses) {
        if *status != call.expect {
            *unexpected.entry(*status).or_default() += 1;
        }
    }
    let errors: usize = unexpected.values().sum();
    let seconds = outcome.elapsed.as_secs_f64();
    let detail = if unexpected.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = unexpected
            .iter()
            .map(|(status, n)| {
                if *status == 0 {
                    format!("{n} transport")
                } else {
                    format!("{n}×{status}")
                }
            })
            .collect();
        format!(" ({})", parts.join(", "))
    };
    println!(
        "| {name} | {} | {concurrency} | {seconds:.1} s | {:.1} req/s | {:.1} | {:.1} | {:.1} | {:.1} | {errors}{detail} |",
        calls.len(),
        calls.len() as f64 / seconds.max(f64::EPSILON),
        percentile(&outcome.latencies, 50.0),
        percentile(&outcome.latencies, 90.0),
        percentile(&outcome.latencies, 99.0),
        percentile(&outcome.latencies, 100.0),
    );
    errors
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!(
                "loadgen: {message}\nusage: loadgen [--api URL] [--table NAME] [--requests N] \
                 [--concurrency C] [--users U] [--purchases P] [--plan ID] [--audit-user ID]..."
            );
            return ExitCode::from(2);
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(options.concurrency)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("loadgen: http client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run_id = format!("load{}", unix_now());
    let admin = token(&options.secret, "loadgen-admin", true);
    let users: Vec<String> = (0..options.users)
        .map(|i| format!("{run_id}u{i}"))
        .collect();
    let buyers: Vec<String> = (0..options.purchases)
        .map(|i| format!("{run_id}d{i}"))
        .collect();
    let user_tokens: Vec<String> = users
        .iter()
        .map(|u| token(&options.secret, u, false))
        .collect();
    let post = reqwest::Method::POST;

    println!(
        "| scenario | requests | concurrency | wall time | throughput | p50 ms | p90 ms | p99 ms | max ms | errors |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut errors = 0;

    // 1. Balance reads.
    let calls: Vec<Call> = (0..options.requests)
        .map(|i| Call {
            method: reqwest::Method::GET,
            path: "/api/billing/balance".into(),
            token: user_tokens[i % users.len()].clone(),
            body: None,
            expect: 200,
            user: i % users.len(),
        })
        .collect();
    let outcome = run(&client, &options.api, calls.clone(), options.concurrency).await;
    errors += report(
        "GET /api/billing/balance",
        &calls,
        &outcome,
        options.concurrency,
    );

    // 2. Admin credit adds, spread over the same users.
    let calls: Vec<Call> = (0..options.requests)
        .map(|i| Call {
            method: post.clone(),
            path: format!("/api/admin/users/{}/custom-credits", users[i % users.len()]),
            token: admin.clone(),
            body: Some(r#"{"amount": "1.00", "reason": "load test"}"#.into()),
            expect: 200,
            user: i % users.len(),
        })
        .collect();
    let outcome = run(&client, &options.api, calls.clone(), options.concurrency).await;
    errors += report(
        "POST /api/admin/users/{id}/custom-credits",
        &calls,
        &outcome,
        options.concurrency,
    );
    let mut credited = vec![0i64; users.len()];
    for (call, status) in calls.iter().zip(&outcome.statuses) {
        if *status == 200 {
            credited[call.user] += 1;
        }
    }

    // 3. DNS purchases: fund each buyer with the plan's price (untimed), then buy.
    let price = format!(
        r#"{{"amount": "{}", "reason": "load test funding"}}"#,
        plan_price(&client, &options, &admin).await
    );
    let funding: Vec<Call> = buyers
        .iter()
        .enumerate()
        .map(|(i, buyer)| Call {
            method: post.clone(),
            path: format!("/api/admin/users/{buyer}/custom-credits"),
            token: admin.clone(),
            body: Some(price.clone()),
            expect: 200,
            user: i,
        })
        .collect();
    let funded = run(&client, &options.api, funding.clone(), options.concurrency).await;
    let unfunded = funded.statuses.iter().filter(|s| **s != 200).count();
    if unfunded > 0 {
        eprintln!("loadgen: {unfunded} buyers could not be funded");
        errors += unfunded;
    }
    let calls: Vec<Call> = buyers
        .iter()
        .enumerate()
        .map(|(i, buyer)| Call {
            method: post.clone(),
            path: format!("/api/dns/plans/{}/purchase", options.plan),
            token: token(&options.secret, buyer, false),
            body: None,
            expect: 200,
            user: i,
        })
        .collect();
    let outcome = run(&client, &options.api, calls.clone(), options.concurrency).await;
    errors += report(
        &format!("POST /api/dns/plans/{}/purchase", options.plan),
        &calls,
        &outcome,
        options.concurrency,
    );
    let bought: Vec<bool> = outcome.statuses.iter().map(|s| *s == 200).collect();

    // 4. The audit, straight from DynamoDB.
    let ledger = {
        let sdk = billing_config::load_aws_config().await;
        Ledger::new(billing_config::dynamo_client(&sdk), &options.table)
    };
    let mut audited = 0;
    let mut problems = Vec::new();
    let mut expectations: Vec<(String, Usd)> = Vec::new();
    for (user, count) in users.iter().zip(&credited) {
        match Usd::from_cents(count * 100) {
            Ok(expected) => expectations.push((user.clone(), expected)),
            Err(e) => problems.push(format!("{user}: {e}")),
        }
    }
    for (buyer, bought) in buyers.iter().zip(&bought) {
        if *bought {
            expectations.push((buyer.clone(), Usd::ZERO));
        }
    }
    for (user, expected) in &expectations {
        let Ok(id) = UserId::parse(user) else {
            problems.push(format!("{user}: not a user id"));
            continue;
        };
        match ledger.audit(&id).await {
            Ok(report) if !report.is_sound() => {
                problems.push(format!("{user}: {:?}", report.problems));
            }
            Ok(report) if report.balance != *expected => problems.push(format!(
                "{user}: balance {} but {expected} expected",
                report.balance
            )),
            Ok(_) => audited += 1,
            Err(e) => problems.push(format!("{user}: audit failed: {e}")),
        }
    }
    for user in &options.audit_users {
        let Ok(id) = UserId::parse(user) else {
            problems.push(format!("{user}: not a user id"));
            continue;
        };
        match ledger.audit(&id).await {
            Ok(report) if !report.is_sound() => {
                problems.push(format!("{user}: {:?}", report.problems));
            }
            Ok(report) => {
                let entries = i64::try_from(report.entries).unwrap_or(i64::MAX);
                match Usd::from_cents(entries.saturating_mul(100)) {
                    Ok(expected) if expected == report.balance => {
                        println!(
                            "Ledger audit of {user}: sound, {} entries, balance {}.",
                            report.entries, report.balance
                        );
                    }
                    _ => problems.push(format!(
                        "{user}: balance {} after {} adds of 1.00",
                        report.balance, report.entries
                    )),
                }
            }
            Err(e) => problems.push(format!("{user}: audit failed: {e}")),
        }
    }
    println!();
    println!(
        "Ledger audit: {audited} of {} touched accounts sound with the expected balance \
         ({} credited users, {} DNS buyers).",
        expectations.len(),
        users.len(),
        bought.iter().filter(|b| **b).count()
    );
    for problem in &problems {
        println!("  audit problem: {problem}");
    }
    if errors > 0 || !problems.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The plan's price, from `GET /api/dns/plans` (so funding is exact).
async fn plan_price(client: &reqwest::Client, options: &Options, admin: &str) -> String {
    let fallback = || "5.00".to_owned();
    let Ok(response) = client
        .get(format!("{}/api/dns/plans", options.api))
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
    else {
        return fallback();
    };
    let Ok(bytes) = response.bytes().await else {
        return fallback();
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return fallback();
    };
    body["plans"]
        .as_array()
        .and_then(|plans| plans.iter().find(|p| p["id"] == options.plan.as_str()))
        .and_then(|plan| plan["price"].as_str())
        .map_or_else(fallback, str::to_owned)
}
