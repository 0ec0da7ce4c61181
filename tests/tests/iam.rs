//! Local IAM: every function's DynamoDB calls are checked against its own
//! policy in template.yaml (devstack::iam; docs/reliability.md, "Local
//! IAM"), so a policy too narrow for its code fails here as it would in AWS.

use devstack::iam::Policies;
use devstack::template::Template;
use integration_tests::api::TestApi;
use integration_tests::new_user;
use ledger::{Change, EntryDetails, EntryKind, UserId};
use serde_json::json;
use time::macros::datetime;

async fn fund(api: &TestApi, user: &UserId, amount: &str) {
    let details = EntryDetails::new(EntryKind::AdminCredit, "test funds").admin("9", "test funds");
    api.ledger()
        .apply(Change::new(
            user.clone(),
            integration_tests::usd(amount),
            details,
        ))
        .await
        .unwrap();
}

fn refusals(api: &TestApi) -> std::collections::BTreeMap<String, u64> {
    api.table.iam.stats().access_denied
}

/// The DNS subscription of `user`, as `GET /api/billing/subscriptions` lists it.
async fn dns_subscription_id(api: &TestApi, token: &str) -> String {
    let listed = api.get("/api/billing/subscriptions", token).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    listed.body["items"][0]["id"]
        .as_str()
        .expect("the DNS subscription is listed")
        .to_owned()
}

/// `POST /api/billing/subscriptions/{id}/cancel` writes the subscription and
/// its outbox event (a `Put`) in one transaction: the billing-subscriptions
/// role must allow `dynamodb:PutItem`, for an active subscription
/// (cancelled) as for a past-due one (expired now).
#[tokio::test]
async fn cancelling_a_subscription_is_allowed_by_its_functions_policy() {
    let api = TestApi::new().await;
    let ledger = api.ledger();
    billing::dns::seed_default_plans(&ledger).await.unwrap();
    let bought_at = datetime!(2026-01-31 10:00 UTC);

    // Active → cancelled.
    let active = new_user();
    fund(&api, &active, "100.00").await;
    billing::dns::purchase(&ledger, &active, "pro", bought_at)
        .await
        .unwrap();
    let token = api.token(active.as_str(), false);
    let id = dns_subscription_id(&api, &token).await;
    let cancelled = api
        .call(
            "POST",
            &format!("/api/billing/subscriptions/{id}/cancel"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["subscription"]["status"], json!("cancelled"));

    // Past due (its renewal could not be paid) → expired by the cancel.
    let short = new_user();
    fund(&api, &short, "20.00").await;
    billing::dns::purchase(&ledger, &short, "pro", bought_at)
        .await
        .unwrap();
    let due = datetime!(2026-02-28 10:00 UTC);
    let deadline = billing::dns::Deadline::before(
        tokio::time::Instant::now() + std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(5),
    );
    billing::dns::run_renewals(&ledger, due, deadline, Default::default())
        .await
        .unwrap();
    let token = api.token(short.as_str(), false);
    let id = dns_subscription_id(&api, &token).await;
    let expired = api
        .call(
            "POST",
            &format!("/api/billing/subscriptions/{id}/cancel"),
            Some(&token),
            None,
            &[],
        )
        .await;
    assert_eq!(expired.status, 200, "{:?}", expired.body);
    assert_eq!(expired.body["subscription"]["status"], json!("expired"));
    assert!(refusals(&api).is_empty(), "{:?}", refusals(&api));
}

/// The project's template with one edit (which must apply).
fn narrowed(from: &str, to: &str) -> Policies {
    let text = std::fs::read_to_string(devstack::template_path()).unwrap();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from} is in template.yaml once"
    );
    let template = Template::parse(&text.replace(from, to)).unwrap();
    Policies::from_template(&template).unwrap()
}

/// Narrowing a function's policy makes its route fail with the refusal
/// AWS would answer (a 500 to the caller), and only that route.
#[tokio::test]
async fn narrowing_a_policy_makes_its_route_fail() {
    let api = TestApi::new().await;
    billing::dns::seed_default_plans(&api.ledger())
        .await
        .unwrap();
    let user = new_user();
    fund(&api, &user, "10.00").await;
    let token = api.token(user.as_str(), false);
    let proxy = &api.table.iam;
    assert_eq!(api.get("/api/billing/balance", &token).await.status, 200);
    assert_eq!(api.get("/api/dns/plans", &token).await.status, 200);

    // The balance function without dynamodb:GetItem.
    proxy.set_policies(Some(narrowed(
        "Action: [dynamodb:GetItem]\n              Resource: !GetAtt BillingTable.Arn\n            - Effect: Allow\n              Action: [secretsmanager:GetSecretValue]\n              Resource: [!Ref JwtSecretArn, !Ref VirtFusionSecretArn]",
        "Action: [dynamodb:Query]\n              Resource: !GetAtt BillingTable.Arn\n            - Effect: Allow\n              Action: [secretsmanager:GetSecretValue]\n              Resource: [!Ref JwtSecretArn, !Ref VirtFusionSecretArn]",
    )));
    assert_eq!(api.get("/api/billing/balance", &token).await.status, 500);
    assert_eq!(api.get("/api/dns/plans", &token).await.status, 200);
    assert_eq!(
        refusals(&api).get("BalanceFunction dynamodb:GetItem"),
        Some(&1)
    );

    // The plans function's Query granted on another index than the one it reads.
    let dns_plans_grant = "      Description: GET /api/dns/plans";
    let text = std::fs::read_to_string(devstack::template_path()).unwrap();
    let at = text.find(dns_plans_grant).expect("DnsPlansFunction");
    let index_grant = "Resource: !Sub \"${BillingTable.Arn}/index/gsi1\"";
    let offset = at + text[at..].find(index_grant).unwrap();
    let mut edited = text.clone();
    edited.replace_range(
        offset..offset + index_grant.len(),
        "Resource: !Sub \"${BillingTable.Arn}/index/gsi2\"",
    );
    proxy.set_policies(Some(
        Policies::from_template(&Template::parse(&edited).unwrap()).unwrap(),
    ));
    assert_eq!(api.get("/api/dns/plans", &token).await.status, 500);
    assert_eq!(api.get("/api/billing/balance", &token).await.status, 200);
    assert_eq!(
        refusals(&api).get("DnsPlansFunction dynamodb:Query"),
        Some(&1)
    );

    // The template as it is: both answer again.
    proxy.set_policies(Some(Policies::load().unwrap()));
    assert_eq!(api.get("/api/dns/plans", &token).await.status, 200);
}

/// The same check in front of moto: EventBridge, Secrets Manager and SQS
/// calls are refused as AWS refuses them when the caller's policy lacks
/// the action.
#[tokio::test]
async fn moto_calls_are_checked_against_the_callers_policy() {
    use aws_sdk_eventbridge::types::PutEventsRequestEntry;
    use integration_tests::events::{function_sdk, moto_iam_proxy};
    let iam = moto_iam_proxy().await;
    let entry = PutEventsRequestEntry::builder()
        .source("iam.test")
        .detail_type("probe")
        .detail("{}")
        .build();
    let events_as = |binary: &'static str| {
        let endpoint = iam.endpoint();
        async move { events_publisher_fn::client(&function_sdk(binary).await, Some(endpoint)) }
    };
    let publisher = events_as("events-publisher").await;
    publisher
        .put_events()
        .entries(entry.clone())
        .send()
        .await
        .expect("the publisher may PutEvents");
    let balance = events_as("balance").await;
    let refused = balance
        .put_events()
        .entries(entry)
        .send()
        .await
        .expect_err("the balance function may not PutEvents");
    assert_eq!(
        aws_sdk_eventbridge::error::ProvideErrorMetadata::code(&refused),
        Some("AccessDeniedException"),
        "{refused:?}"
    );

    let secrets_as = |binary: &'static str| {
        let endpoint = iam.endpoint();
        async move {
            billing_config::secrets_manager_client(&function_sdk(binary).await, Some(endpoint))
        }
    };
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:iam-probe-AbCdEf";
    let allowed = secrets_as("balance")
        .await
        .get_secret_value()
        .secret_id(missing)
        .send()
        .await
        .expect_err("no such secret in moto");
    assert_eq!(
        aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&allowed),
        Some("ResourceNotFoundException"),
        "allowed through to moto: {allowed:?}"
    );
    let refused = secrets_as("events-publisher")
        .await
        .get_secret_value()
        .secret_id(missing)
        .send()
        .await
        .expect_err("the publisher reads no secret");
    assert_eq!(
        aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&refused),
        Some("AccessDeniedException"),
        "{refused:?}"
    );

    let sqs = renewal_cron_fn::fanout::client(&function_sdk("balance").await, Some(iam.endpoint()));
    let refused = sqs
        .send_message()
        .queue_url(format!("{}/123456789012/iam-probe", iam.endpoint()))
        .message_body("x")
        .send()
        .await
        .expect_err("the balance function may not SendMessage");
    assert!(
        format!("{refused:?}").contains("AccessDenied"),
        "{refused:?}"
    );
    assert_eq!(iam.stats().access_denied.len(), 3, "{:?}", iam.stats());
}
