//! `./infra/bench.sh reconcile` (or `cargo run -p ledger-bench --bin reconcile
//! --profile bench-local` with `DYNAMODB_ENDPOINT` set): a reconciliation
//! window of 10,000 PayPal captures (the PayPal stand-in's book), 100 of
//! which the ledger never settled (capture answer and webhook lost). Counts
//! DynamoDB calls (SDK interceptor) and items read, PayPal pages, wall time,
//! for the drifted run and for the steady state; prints Markdown for
//! docs/benchmarks.md.

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use billing::orders::{OrderRecord, PaymentStatus, PurchaseKind};
use billing::reconcile::{ReconcileOptions, RunSummary};
use billing_money::Usd;
use devstack::paypal::{PayPalStandIn, SeedOrder};
use ledger::{DynamoCallCounter, Ledger, UserId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TRANSACTIONS: usize = 10_000;
const DRIFTED: usize = 100;

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
    let ledger = Ledger::new(client, &table);
    let paypal = PayPalStandIn::spawn(([127, 0, 0, 1], 0).into(), "bench", "bench-secret", "wh")
        .await
        .unwrap_or_else(|e| fail(e));
    let client = paypal::PayPalClient::new(
        &paypal.base_url(),
        billing_config::SecretValue::new("bench"),
        billing_config::SecretValue::new("bench-secret"),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| fail(e));

    // PayPal's book: 10,000 captures over the last 2.5 days.
    let now = time::OffsetDateTime::now_utc();
    let seeds: Vec<SeedOrder> = (0..TRANSACTIONS)
        .map(|i| SeedOrder {
            amount_cents: 500 + (i as i64 % 50) * 100,
            custom_id: format!("u{}", i % 2000),
            invoice_id: format!("bench-{i}"),
            at: now - time::Duration::seconds(60 * 60 * 60 * (i as i64) / TRANSACTIONS as i64),
        })
        .collect();
    let seeded = paypal.seed_paid_orders(&seeds);

    // Our orders: settled as the capture route settles them, except every
    // 100th, which PayPal captured but the ledger never heard of.
    let setup = Instant::now();
    let mut items = Vec::with_capacity(TRANSACTIONS);
    for (i, (seed, ids)) in seeds.iter().zip(&seeded).enumerate() {
        let drifted = i % (TRANSACTIONS / DRIFTED) == 0;
        let amount = Usd::from_cents(seed.amount_cents).unwrap_or_else(|e| fail(e));
        let record = OrderRecord {
            order_id: ids.order_id.clone(),
            user: UserId::parse(&seed.custom_id).unwrap_or_else(|e| fail(e)),
            kind: PurchaseKind::Credits,
            amount,
            tokens: None,
            purchase_id: seed.invoice_id.clone(),
            status: if drifted {
                PaymentStatus::Created
            } else {
                PaymentStatus::Completed
            },
            capture_id: (!drifted).then(|| ids.capture_id.clone()),
            captured_amount: (!drifted).then_some(amount),
            refunded_amount: Usd::ZERO,
            refunds_completed: None,
            capture_attempt: 0,
            delivery: None,
            credit_id: None,
            credit_tokens: None,
            sending_tokens: None,
            stray_credits: Vec::new(),
            reversal_id: None,
            review_reason: None,
            delivery_attempts: 0,
            created_at: ledger::format_rfc3339(seed.at),
        };
        let mut item = record.to_item();
        if !drifted {
            let settled_at = ledger::format_rfc3339(seed.at + time::Duration::seconds(1));
            item.insert(
                "gsi2pk".into(),
                AttributeValue::S(billing::reconcile::settled_partition(&settled_at)),
            );
            item.insert(
                "gsi2sk".into(),
                AttributeValue::S(format!("{settled_at}#{}", record.order_id)),
            );
            item.insert("settledAt".into(), AttributeValue::S(settled_at));
        }
        items.push(item);
    }
    write_all(&ledger, items).await;
    eprintln!(
        "seeded {TRANSACTIONS} orders in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    println!("## Reconciliation (DynamoDB Local, PayPal stand-in)\n");
    println!(
        "A window of {TRANSACTIONS} PayPal captures (3 days), {DRIFTED} of them never settled \
         in the ledger (capture answer and webhook lost). Page size 500.\n"
    );
    println!(
        "| run | PayPal pages | PayPal order reads | healed | DynamoDB calls | calls by API | items read | items read / PayPal line | Scans | wall s |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for name in ["drifted (100 to heal)", "steady state (rerun)"] {
        calls.reset();
        let searches = paypal.search_count();
        let requests = paypal.request_count();
        let started = Instant::now();
        let summary = billing::reconcile::run(
            &ledger,
            &client,
            None,
            billing::dns::dates::to_millis(time::OffsetDateTime::now_utc()),
            ReconcileOptions::default(),
            std::time::Instant::now() + Duration::from_secs(600),
        )
        .await
        .unwrap_or_else(|e| fail(e));
        let wall = started.elapsed();
        let by_api: BTreeMap<String, u64> = calls.snapshot();
        let pages = paypal.search_count() - searches;
        let paypal_reads = paypal.request_count() - requests - pages;
        report(name, &summary, pages, paypal_reads, &calls, &by_api, wall);
    }
}

fn report(
    name: &str,
    summary: &RunSummary,
    pages: u64,
    paypal_reads: u64,
    calls: &DynamoCallCounter,
    by_api: &BTreeMap<String, u64>,
    wall: Duration,
) {
    let scans = by_api.get("Scan").copied().unwrap_or(0);
    println!(
        "| {name} | {pages} | {paypal_reads} | {} | {} | {by_api:?} | {} | {:.3} | {scans} | {:.2} |",
        summary.healed,
        calls.total(),
        summary.dynamo_items_read,
        summary.dynamo_items_read as f64 / summary.checked.max(1) as f64,
        wall.as_secs_f64()
    );
    eprintln!("{}", serde_json_line(summary));
}

fn serde_json_line(summary: &RunSummary) -> String {
    format!(
        "checked={} healed={} mismatches={} errors={} complete={} elapsed_ms={}",
        summary.checked,
        summary.healed,
        summary.mismatches,
        summary.errors,
        summary.complete,
        summary.elapsed_ms
    )
}

/// BatchWriteItem in 25s, 8 in flight.
async fn write_all(ledger: &Ledger, items: Vec<ledger::AttrMap>) {
    let ledger = Arc::new(ledger.clone());
    let mut chunks: Vec<Vec<ledger::AttrMap>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(25).collect());
    }
    let chunks = Arc::new(std::sync::Mutex::new(chunks));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (ledger, chunks) = (ledger.clone(), chunks.clone());
        workers.spawn(async move {
            loop {
                let chunk = match chunks.lock() {
                    Ok(mut c) => c.pop(),
                    Err(_) => None,
                };
                let Some(chunk) = chunk else { break };
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
                for _ in 0..10 {
                    let out = ledger
                        .client()
                        .batch_write_item()
                        .request_items(ledger.table(), requests.clone())
                        .send()
                        .await
                        .unwrap_or_else(|e| fail(aws_sdk_dynamodb::error::DisplayErrorContext(e)));
                    requests = out
                        .unprocessed_items
                        .and_then(|mut u| u.remove(ledger.table()))
                        .unwrap_or_default();
                    if requests.is_empty() {
                        break;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("bench failed: {e}");
    std::process::exit(1)
}
