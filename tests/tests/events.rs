//! Events through the outbox, end to end: each change commits its outbox
//! item in the same transaction, the table's stream (DynamoDB Local) is read
//! as Lambda's event source mapping reads it, the real `events-publisher`
//! handler calls `PutEvents` on a real EventBridge API (moto_server), and a
//! rule delivers to an SQS queue, which the tests read.

use billing::events::DetailType;
use devstack::virtfusion::FailureMode;
use integration_tests::api::TestApi;
use integration_tests::events::{EventsEnv, Received};
use integration_tests::{assert_audit, new_user, usd};
use ledger::{Change, EntryDetails, EntryKind};
use serde_json::{Value, json};
use time::macros::datetime;

const CREDITS: &str = "/api/billing/custom-credits";
const TOKENS: &str = "/api/billing/virtfusion-tokens";

async fn approve(url: &str) {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
}

/// A paid PayPal order of `amount` (credits or tokens); returns the order id.
async fn paid(api: &TestApi, base: &str, token: &str, amount: &str) -> (String, Value) {
    let created = api
        .send(
            "POST",
            &format!("{base}/add"),
            token,
            &format!(r#"{{"amount": "{amount}"}}"#),
        )
        .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let order_id = created.body["orderId"].as_str().unwrap().to_owned();
    approve(created.body["approveUrl"].as_str().unwrap()).await;
    let captured = api
        .send(
            "POST",
            &format!("{base}/capture"),
            token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    (order_id, captured.body)
}

async fn fund(api: &TestApi, user: &ledger::UserId, amount: &str) {
    let details = EntryDetails::new(EntryKind::AdminCredit, "test funds").admin("9", "test funds");
    api.ledger()
        .apply(Change::new(user.clone(), usd(amount), details))
        .await
        .unwrap();
}

/// Publishes what is pending and returns what arrived.
async fn published(events: &mut EventsEnv) -> Vec<Received> {
    let pumped = events.publish().await;
    assert_eq!(pumped.failed_batches, 0, "publisher failed");
    let got = events.received().await;
    for event in &got {
        // Every event says when its change happened, whenever it is published.
        assert!(event.detail["occurredAt"].is_string(), "{event:?}");
    }
    got
}

fn of_type(events: &[Received], t: DetailType) -> Vec<&Received> {
    events
        .iter()
        .filter(|e| e.detail_type == t.as_str())
        .collect()
}

fn types(events: &[Received]) -> Vec<String> {
    let mut types: Vec<String> = events.iter().map(|e| e.detail_type.clone()).collect();
    types.sort();
    types
}

#[tokio::test]
async fn purchases_and_debits_publish_exactly_their_events() {
    let api = TestApi::new().await;
    billing::dns::seed_default_plans(&api.ledger())
        .await
        .unwrap();
    let mut events = EventsEnv::new(&api.table).await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let admin = api.token("900", true);

    // A credit purchase, captured twice (the replay changes nothing): one event.
    let (order_id, body) = paid(&api, CREDITS, &token, "12.50").await;
    assert_eq!(body["balance"], json!("12.50"));
    let replay = api
        .send(
            "POST",
            &format!("{CREDITS}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    assert_eq!(replay.status, 200);
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["credits.purchased"], "{got:?}");
    let purchased = &got[0];
    assert_eq!(purchased.source, "skypanel.billing");
    assert_eq!(purchased.detail["userId"], json!(user.as_str()));
    assert_eq!(purchased.detail["amount"], json!("12.50"));
    assert_eq!(purchased.detail["balance"], json!("12.50"));
    assert_eq!(purchased.detail["orderId"], json!(order_id));
    assert_eq!(purchased.event_id().len(), 36);
    assert!(
        purchased.detail["occurredAt"].is_string(),
        "{:?}",
        purchased.detail
    );

    // A refused debit (402) publishes nothing.
    let refused = api
        .send("POST", "/api/dns/plans/pro/purchase", &token, "{}")
        .await;
    assert_eq!(refused.status, 402, "{:?}", refused.body);
    // A debit that stays above the threshold: nothing either (12.50 → 7.50).
    let bought = api
        .send("POST", "/api/dns/plans/basic/purchase", &token, "{}")
        .await;
    assert_eq!(bought.status, 200, "{:?}", bought.body);
    assert_eq!(published(&mut events).await.len(), 0);

    // Crossing the threshold downward (7.50 → 4.50): one balance_low.
    let debit = |amount: &str| {
        let details = EntryDetails::new(EntryKind::AdminDebit, "test debit").admin("900", "test");
        Change::new(user.clone(), -usd(amount), details)
    };
    api.ledger().apply(debit("3.00")).await.unwrap();
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["credits.balance_low"], "{got:?}");
    let low = of_type(&got, DetailType::CreditsBalanceLow)[0];
    assert_eq!(low.detail["balance"], json!("4.50"));
    assert_eq!(low.detail["previousBalance"], json!("7.50"));
    assert_eq!(low.detail["threshold"], json!("5.00"));
    assert_eq!(low.detail["debit"], json!("3.00"));
    assert_eq!(low.detail["userId"], json!(user.as_str()));

    // Below the threshold already: a further debit is not "crossing" again.
    api.ledger().apply(debit("1.00")).await.unwrap();
    assert_eq!(published(&mut events).await.len(), 0);
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("3.50"));
    let _ = admin;
}

#[tokio::test]
async fn token_deliveries_publish_purchased_or_needs_review() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let admin = api.token("1", true);

    let (delivered, body) = paid(&api, TOKENS, &token, "4").await;
    assert_eq!(body["status"], json!("completed"));
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["tokens.purchased"]);
    assert_eq!(got[0].detail["tokens"], json!(400));
    assert_eq!(got[0].detail["amount"], json!("4.00"));
    assert_eq!(got[0].detail["orderId"], json!(delivered));

    // VirtFusion applies it but the answer is lost: review, then an admin resolves it.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let (uncertain, body) = paid(&api, TOKENS, &token, "3").await;
    assert_eq!(body["status"], json!("needs_review"));
    api.virtfusion.clear_failure();
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["tokens.delivery_needs_review"]);
    assert_eq!(got[0].detail["orderId"], json!(uncertain));
    assert_eq!(got[0].detail["reason"], json!("outcome_unknown"));
    let credit_id = api.virtfusion.credits()[0].id;
    let resolved = api
        .send(
            "POST",
            &format!("/api/admin/virtfusion-deliveries/{uncertain}/resolve"),
            &admin,
            &json!({"delivered": true, "creditId": credit_id, "reason": "seen in VirtFusion"})
                .to_string(),
        )
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.body);
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["tokens.purchased"]);
    assert_eq!(got[0].detail["resolvedBy"], json!("1"));
}

#[tokio::test]
async fn subscriptions_publish_renewed_past_due_expired_and_cancelled() {
    let api = TestApi::new().await;
    billing::dns::seed_default_plans(&api.ledger())
        .await
        .unwrap();
    let mut events = EventsEnv::new(&api.table).await;
    let ledger = api.ledger();
    let bought_at = datetime!(2026-01-31 10:00 UTC);
    let job = |at| {
        let ledger = ledger.clone();
        async move {
            let deadline = billing::dns::Deadline::before(
                tokio::time::Instant::now() + std::time::Duration::from_secs(30),
                std::time::Duration::from_secs(5),
            );
            billing::dns::run_renewals(&ledger, at, deadline, Default::default())
                .await
                .unwrap()
        }
    };
    // Pays its renewal; a second one cannot (past due, then expired after grace).
    let payer = new_user();
    fund(&api, &payer, "100.00").await;
    billing::dns::purchase(&ledger, &payer, "pro", bought_at)
        .await
        .unwrap();
    let short = new_user();
    fund(&api, &short, "20.00").await;
    billing::dns::purchase(&ledger, &short, "pro", bought_at)
        .await
        .unwrap();
    // Cancels: cancelled now, expired at the period end.
    let leaver = new_user();
    fund(&api, &leaver, "100.00").await;
    billing::dns::purchase(&ledger, &leaver, "pro", bought_at)
        .await
        .unwrap();
    billing::dns::cancel(&ledger, &leaver, bought_at)
        .await
        .unwrap();
    billing::dns::cancel(&ledger, &leaver, bought_at)
        .await
        .unwrap();
    let got = published(&mut events).await;
    // 20.00 → 5.00 is not below the threshold; the cancel is reported once.
    assert_eq!(types(&got), ["subscription.cancelled"], "{got:?}");
    assert_eq!(got[0].detail["userId"], json!(leaver.as_str()));
    assert_eq!(got[0].detail["product"], json!("dns_plan"));

    let due = datetime!(2026-02-28 10:00 UTC);
    job(due).await;
    job(due + time::Duration::minutes(1)).await; // overlapping/later runs add nothing
    let got = published(&mut events).await;
    assert_eq!(
        types(&got),
        [
            "subscription.expired",
            "subscription.past_due",
            "subscription.renewed"
        ],
        "{got:?}"
    );
    let renewed = of_type(&got, DetailType::SubscriptionRenewed)[0];
    assert_eq!(renewed.detail["userId"], json!(payer.as_str()));
    assert_eq!(renewed.detail["amount"], json!("15.00"));
    assert_eq!(renewed.detail["balance"], json!("70.00"));
    assert_eq!(renewed.detail["period"], json!("2026-02-28"));
    assert_eq!(
        renewed.detail["nextRenewalDate"],
        json!("2026-03-31T10:00:00.000Z")
    );
    let past_due = of_type(&got, DetailType::SubscriptionPastDue)[0];
    assert_eq!(past_due.detail["userId"], json!(short.as_str()));
    assert_eq!(past_due.detail["amountDue"], json!("15.00"));
    let expired = of_type(&got, DetailType::SubscriptionExpired)[0];
    assert_eq!(expired.detail["userId"], json!(leaver.as_str()));
    assert_eq!(expired.detail["reason"], json!("ended"));

    job(due + time::Duration::days(8)).await;
    let got = published(&mut events).await;
    assert_eq!(types(&got), ["subscription.expired"]);
    assert_eq!(got[0].detail["userId"], json!(short.as_str()));
    assert_eq!(got[0].detail["reason"], json!("unpaid"));
}

#[tokio::test]
async fn a_crash_between_commit_and_publish_delays_the_event_and_a_redelivery_keeps_its_id() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let user = new_user();
    let token = api.token(user.as_str(), false);
    let (order_id, _) = paid(&api, CREDITS, &token, "20").await;

    // The publisher fails (its bus is gone): committed, not published, not lost.
    let broken = events_publisher_fn::Deps::new(events.publisher.client.clone(), "no-such-bus");
    let pumped = events.publish_with(&broken).await;
    assert!(pumped.failed_batches > 0);
    assert!(pumped.delivered.is_empty());
    assert_eq!(events.pending(), 1, "still waiting in the stream");
    assert!(events.received().await.is_empty());

    // The stream retries it once the publisher works again.
    let pumped = events.publish().await;
    assert_eq!(pumped.delivered.len(), 1);
    let got = events.received().await;
    assert_eq!(types(&got), ["credits.purchased"]);
    assert_eq!(got[0].detail["orderId"], json!(order_id));

    // A redelivery of the same stream records (the answer of a publish was
    // lost) publishes again with the same eventId and detail: consumers deduplicate.
    let batch = json!({"Records": pumped.delivered});
    for _ in 0..2 {
        let answer = events_publisher_fn::publish(&events.publisher, &batch).await;
        assert_eq!(answer, json!({"batchItemFailures": []}));
    }
    let again = events.received().await;
    assert_eq!(again.len(), 2);
    for copy in &again {
        assert_eq!(copy.event_id(), got[0].event_id());
        assert_eq!(copy.detail, got[0].detail);
    }
}

#[tokio::test]
async fn the_publisher_reports_the_first_failed_record_so_the_stream_resumes_there() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    // 23 events: three PutEvents calls of at most 10 entries.
    let threshold = billing::events::low_balance_threshold();
    assert_eq!(threshold, usd("5.00"));
    let mut users = Vec::new();
    for _ in 0..23 {
        let user = new_user();
        fund(&api, &user, "6.00").await;
        let details = EntryDetails::new(EntryKind::AdminDebit, "test debit").admin("9", "test");
        api.ledger()
            .apply(Change::new(user.clone(), -usd("2.00"), details))
            .await
            .unwrap();
        users.push(user);
    }
    let got = published(&mut events).await;
    assert_eq!(got.len(), 23);
    let mut ids: Vec<&str> = got.iter().map(Received::event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 23, "unique ids");
    // A batch whose calls fail reports its first record: Lambda resumes there.
    let broken = events_publisher_fn::Deps::new(events.publisher.client.clone(), "no-such-bus");
    let batch = json!({"Records": [
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "100", "NewImage": {
            "pk": {"S": "OUTBOX#x"}, "sk": {"S": "OUTBOX"}, "eventId": {"S": "x"},
            "detailType": {"S": "credits.purchased"}, "detail": {"S": "{}"}}}},
    ]});
    let answer = events_publisher_fn::publish(&broken, &batch).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "100"}]})
    );
}

#[tokio::test]
async fn service_charges_and_their_refunds_publish_once_each() {
    let api = TestApi::new().await;
    let mut events = EventsEnv::new(&api.table).await;
    let user = new_user();
    fund(&api, &user, "100.00").await;
    let service = api.service_token("svc-panel");
    let post = |path: String, key: &'static str, body: Value| {
        let api = &api;
        let service = service.clone();
        async move {
            api.call(
                "POST",
                &path,
                Some(&service),
                Some(&body.to_string()),
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
            )
            .await
        }
    };
    let charge = json!({
        "userId": user.as_str(),
        "amount": "49.00",
        "serviceType": "dedicated_server",
        "serviceId": "srv-42",
        "description": "DS-1, December",
    });
    let charged = post("/api/services/charges".into(), "c", charge.clone()).await;
    assert_eq!(charged.status, 200, "{:?}", charged.body);
    // The retry replays: no second event.
    let again = post("/api/services/charges".into(), "c", charge).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    let id = charged.body["charge"]["id"].as_str().unwrap().to_owned();
    let refund = format!("/api/services/charges/{id}/refund");
    let partial = json!({"amount": "10.00", "reason": "outage"});
    assert_eq!(
        post(refund.clone(), "r1", partial.clone()).await.status,
        200
    );
    assert_eq!(post(refund.clone(), "r1", partial).await.status, 200);
    let rest = json!({"reason": "outage"});
    assert_eq!(post(refund, "r2", rest).await.status, 200);

    let got = published(&mut events).await;
    assert_eq!(
        types(&got),
        [
            "service.charge_refunded",
            "service.charge_refunded",
            "service.charged"
        ],
        "{got:?}"
    );
    let charged = of_type(&got, DetailType::ServiceCharged)[0];
    assert_eq!(charged.detail["chargeId"], json!(id));
    assert_eq!(charged.detail["amount"], json!("49.00"));
    assert_eq!(charged.detail["balance"], json!("51.00"));
    assert_eq!(charged.detail["serviceType"], json!("dedicated_server"));
    let mut refunded: Vec<(Value, Value)> = of_type(&got, DetailType::ServiceChargeRefunded)
        .iter()
        .map(|e| {
            (
                e.detail["amount"].clone(),
                e.detail["refundedAmount"].clone(),
            )
        })
        .collect();
    refunded.sort_by_key(|(_, total)| total.to_string());
    assert_eq!(
        refunded,
        [
            (json!("10.00"), json!("10.00")),
            (json!("39.00"), json!("49.00"))
        ]
    );
    assert_eq!(assert_audit(&api.ledger(), &user).await, usd("100.00"));
}

/// A stream record of an outbox item (`detail` as given), created at `created_at`.
fn outbox_record(sequence: &str, event_id: &str, detail: &str, created_at: &str) -> Value {
    let keys = json!({"pk": {"S": format!("OUTBOX#{event_id}")}, "sk": {"S": "OUTBOX"}});
    json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": sequence, "Keys": keys,
        "NewImage": {
            "pk": {"S": format!("OUTBOX#{event_id}")}, "sk": {"S": "OUTBOX"},
            "eventId": {"S": event_id}, "detailType": {"S": "credits.purchased"},
            "detail": {"S": detail}, "createdAt": {"S": created_at}}}})
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_the_rest_of_the_batch_publishes() {
    let api = TestApi::new().await;
    let events = EventsEnv::new(&api.table).await;
    let created = "2026-03-01T10:00:00.000Z";
    let detail = |id: &str| json!({"eventId": id, "occurredAt": created}).to_string();
    let huge = json!({"eventId": "c", "note": "x".repeat(300 * 1024)}).to_string();
    // Not an outbox item (no detailType): today's mapping filter lets it through.
    let unreadable = json!({"eventName": "INSERT", "dynamodb": {"SequenceNumber": "4",
        "Keys": {"pk": {"S": "OUTBOX#d"}, "sk": {"S": "OUTBOX"}},
        "NewImage": {"pk": {"S": "OUTBOX#d"}, "sk": {"S": "OUTBOX"}, "eventId": {"S": "d"}}}});
    let batch = json!({"Records": [
        outbox_record("1", "a", &detail("a"), created),
        outbox_record("2", "b", "{not json", created),
        outbox_record("3", "c", &huge, created),
        unreadable,
        outbox_record("5", "e", &detail("e"), created),
    ]});
    let answer = events_publisher_fn::publish(&events.publisher, &batch).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));

    let got = events.received().await;
    let mut ids: Vec<&str> = got.iter().map(Received::event_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "e"]);
    // Each entry's Time is the outbox item's createdAt (not when it was published).
    for event in &got {
        assert_eq!(event.time, json!("2026-03-01T10:00:00Z"));
    }
    let mut dead: Vec<(Value, Value)> = events
        .dead_lettered()
        .await
        .into_iter()
        .map(|m| (m["reason"].clone(), m["eventId"].clone()))
        .collect();
    dead.sort_by_key(|(reason, _)| reason.to_string());
    assert_eq!(
        dead,
        [
            (json!("MalformedDetail"), json!("b")),
            (json!("entry_too_large"), json!("c")),
            (json!("not_an_outbox_item"), Value::Null),
        ]
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_a_poison_record_is_retried_not_dropped() {
    let api = TestApi::new().await;
    let events = EventsEnv::new(&api.table).await;
    let publisher = events_publisher_fn::Deps::new(events.publisher.client.clone(), &events.bus);
    let batch = json!({"Records": [
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "7",
            "NewImage": {"pk": {"S": "OUTBOX#d"}, "sk": {"S": "OUTBOX"}}}},
    ]});
    let answer = events_publisher_fn::publish(&publisher, &batch).await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "7"}]})
    );
}

#[tokio::test]
async fn the_publisher_stops_before_its_deadline_and_reports_the_rest() {
    let api = TestApi::new().await;
    let events = EventsEnv::new(&api.table).await;
    let created = "2026-03-01T10:00:00.000Z";
    let batch = json!({"Records": [
        outbox_record("11", "f", &json!({"eventId": "f"}).to_string(), created),
        outbox_record("12", "g", &json!({"eventId": "g"}).to_string(), created),
    ]});
    let answer = events_publisher_fn::publish_until(
        &events.publisher,
        &batch,
        Some(tokio::time::Instant::now()),
    )
    .await;
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "11"}]})
    );
    assert!(events.received().await.is_empty());
}
