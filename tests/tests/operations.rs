#![recursion_limit = "256"]
//! Operating the deployment (README "Operating it"): what `template.yaml`
//! watches is what the code does.
//!
//! - Every function has its Errors and Throttles alarms, and every alarm
//!   notifies the alarm topic.
//! - The metric filters match the JSON lines the functions really write:
//!   the lines are captured from the real handlers (the events publisher, the
//!   webhook) through the very subscriber `init_tracing` installs, and each
//!   filter pattern of the template is evaluated against them.

use devstack::paypal::EventType;
use devstack::virtfusion::FailureMode;
use integration_tests::api::TestApi;
use integration_tests::events::EventsEnv;
use integration_tests::new_user;
use ledger::{Change, EntryDetails, EntryKind, UserId};
use serde_json::{Value as Json, json};
use serde_norway::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use time::macros::datetime;

fn template() -> Value {
    let text = std::fs::read_to_string(devstack::template_path()).expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml parses")
}

fn resources(template: &Value) -> Vec<(String, Value)> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
        .collect()
}

fn of_type<'a>(all: &'a [(String, Value)], kind: &str) -> Vec<&'a (String, Value)> {
    all.iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .collect()
}

/// The target of `!Ref X`.
fn reference(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

#[test]
fn every_function_has_errors_and_throttles_alarms_and_every_alarm_notifies() {
    let template = template();
    let all = resources(&template);
    let alarms = of_type(&all, "AWS::CloudWatch::Alarm");
    let functions = of_type(&all, "AWS::Serverless::Function");
    assert!(functions.len() >= 23, "{}", functions.len());
    for (function, _) in &functions {
        for metric in ["Errors", "Throttles"] {
            let found = alarms.iter().any(|(_, alarm)| {
                let p = &alarm["Properties"];
                p["Namespace"].as_str() == Some("AWS/Lambda")
                    && p["MetricName"].as_str() == Some(metric)
                    && p["Dimensions"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|d| {
                            d["Name"].as_str() == Some("FunctionName")
                                && reference(&d["Value"]) == Some(function.as_str())
                        })
            });
            assert!(found, "{function} has no {metric} alarm");
        }
    }
    for (name, alarm) in &alarms {
        let actions = alarm["Properties"]["AlarmActions"].as_sequence();
        assert!(
            actions.is_some_and(|a| !a.is_empty()),
            "{name} notifies nobody"
        );
    }
}

// ------------------------------------------------ CloudWatch filter patterns

/// The subset of CloudWatch Logs' JSON filter pattern syntax the template
/// uses: `{ $.a.b = "text" && ($.c = "x" || $.d != 1) }`.
struct Pattern {
    tokens: Vec<String>,
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        let inner = pattern
            .trim()
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or_else(|| panic!("not a JSON filter pattern: {pattern}"));
        let mut tokens = Vec::new();
        let mut chars = inner.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                ' ' => {
                    chars.next();
                }
                '(' | ')' => {
                    tokens.push(c.to_string());
                    chars.next();
                }
                '"' => {
                    chars.next();
                    let text: String = chars.by_ref().take_while(|&c| c != '"').collect();
                    tokens.push(format!("\"{text}\""));
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if c == ' ' || c == '(' || c == ')' {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push(word);
                }
            }
        }
        Pattern { tokens }
    }

    fn matches(&self, line: &Json) -> bool {
        let mut at = 0;
        let result = self.or(line, &mut at);
        assert_eq!(
            at,
            self.tokens.len(),
            "pattern not fully read: {:?}",
            self.tokens
        );
        result
    }

    fn or(&self, line: &Json, at: &mut usize) -> bool {
        let mut result = self.and(line, at);
        while self.tokens.get(*at).map(String::as_str) == Some("||") {
            *at += 1;
            result |= self.and(line, at);
        }
        result
    }

    fn and(&self, line: &Json, at: &mut usize) -> bool {
        let mut result = self.term(line, at);
        while self.tokens.get(*at).map(String::as_str) == Some("&&") {
            *at += 1;
            result &= self.term(line, at);
        }
        result
    }

    fn term(&self, line: &Json, at: &mut usize) -> bool {
        if self.tokens[*at] == "(" {
            *at += 1;
            let result = self.or(line, at);
            assert_eq!(self.tokens[*at], ")");
            *at += 1;
            return result;
        }
        let (selector, op, value) = (
            &self.tokens[*at],
            &self.tokens[*at + 1],
            &self.tokens[*at + 2],
        );
        *at += 3;
        let field = select(line, selector);
        let equal = match (field, value.strip_prefix('"')) {
            (Some(Json::String(text)), Some(quoted)) => text == quoted.trim_end_matches('"'),
            (Some(Json::Number(n)), None) => n.to_string() == *value,
            _ => false,
        };
        match op.as_str() {
            "=" => equal,
            "!=" => field.is_some() && !equal,
            other => panic!("operator {other} not supported here"),
        }
    }
}

/// `$.a.b` of a line.
fn select<'a>(line: &'a Json, selector: &str) -> Option<&'a Json> {
    let path = selector.strip_prefix("$.")?;
    path.split('.').try_fold(line, |node, key| node.get(key))
}

/// A metric filter of the template.
struct Filter {
    log_group: String,
    pattern: Pattern,
    metric: String,
    namespace: String,
    /// `1`, or the selector whose number is the value.
    value: String,
}

fn filters() -> BTreeMap<String, Filter> {
    let template = template();
    let all = resources(&template);
    of_type(&all, "AWS::Logs::MetricFilter")
        .into_iter()
        .map(|(_, r)| {
            let p = &r["Properties"];
            let t = &p["MetricTransformations"][0];
            let filter = Filter {
                log_group: reference(&p["LogGroupName"])
                    .expect("LogGroupName: !Ref")
                    .to_owned(),
                pattern: Pattern::parse(p["FilterPattern"].as_str().expect("pattern")),
                metric: t["MetricName"].as_str().expect("metric").to_owned(),
                namespace: t["MetricNamespace"].as_str().expect("namespace").to_owned(),
                value: t["MetricValue"].as_str().expect("value").to_owned(),
            };
            assert!(filter.namespace.starts_with("SkyPanelBilling"));
            (filter.metric.clone(), filter)
        })
        .collect()
}

/// What `filter` adds up over `lines` (the metric's sum).
fn metric(filter: &Filter, lines: &[Json]) -> i64 {
    lines
        .iter()
        .filter(|line| filter.pattern.matches(line))
        .map(|line| match filter.value.as_str() {
            "1" => 1,
            selector => select(line, selector)
                .and_then(Json::as_i64)
                .unwrap_or_else(|| panic!("{} has no number at {selector}", filter.metric)),
        })
        .sum()
}

/// Log lines written through the functions' JSON subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Runs `work` with the functions' log subscriber writing here (INFO).
    async fn during<F: std::future::Future>(&self, work: F) -> F::Output {
        let writer = self.clone();
        let subscriber = billing_config::json_subscriber(
            &billing_config::log_directives(Some("INFO"), None),
            move || writer.clone(),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        work.await
    }

    fn lines(&self) -> Vec<Json> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
            .collect()
    }
}

async fn fund(api: &TestApi, user: &UserId, amount: &str) {
    let details = EntryDetails::new(EntryKind::AdminCredit, "test funds").admin("9", "test");
    api.ledger()
        .apply(Change::new(user.clone(), amount.parse().unwrap(), details))
        .await
        .unwrap();
}

async fn paid(api: &TestApi, route: &str, user: &UserId, amount: &str) -> (String, Json) {
    let token = api.token(user.as_str(), false);
    let created = api
        .send(
            "POST",
            &format!("{route}/add"),
            &token,
            &format!(r#"{{"amount": "{amount}"}}"#),
        )
        .await;
    let order_id = created.body["orderId"].as_str().unwrap().to_owned();
    assert!(api.paypal.approve(&order_id));
    let captured = api
        .send(
            "POST",
            &format!("{route}/capture"),
            &token,
            &format!(r#"{{"orderId": "{order_id}"}}"#),
        )
        .await;
    // 202: paid, the token delivery's outcome still open.
    assert!([200, 202].contains(&captured.status), "{:?}", captured.body);
    (order_id, captured.body)
}

#[tokio::test]
async fn the_business_metrics_count_what_the_publisher_publishes() {
    let api = TestApi::new().await;
    billing::dns::seed_default_plans(&api.ledger())
        .await
        .unwrap();
    let mut events = EventsEnv::new(&api.table).await;
    let ledger = api.ledger();

    // A credits purchase of 12.50, then a refund of 2.50 of it.
    let buyer = new_user();
    let (order_id, _) = paid(&api, "/api/billing/custom-credits", &buyer, "12.50").await;
    let admin = api.token("900", true);
    let refund = api
        .call(
            "POST",
            "/api/admin/refunds",
            Some(&admin),
            Some(&format!(
                r#"{{"orderId": "{order_id}", "amount": "2.50", "reason": "goodwill"}}"#
            )),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "ops-1"),
            ],
        )
        .await;
    assert_eq!(
        refund.body["status"],
        json!("completed"),
        "{:?}",
        refund.body
    );
    // A token delivery whose outcome is unknown: to review.
    api.virtfusion
        .set_failure(FailureMode::ApplyThenHang, Some(1));
    let (_, body) = paid(&api, "/api/billing/virtfusion-tokens", &new_user(), "3").await;
    assert_eq!(body["status"], json!("needs_review"));
    api.virtfusion.clear_failure();
    // One DNS plan renews, another cannot: past due.
    let bought_at = datetime!(2026-01-31 10:00 UTC);
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
    let deadline = billing::dns::Deadline::before(
        tokio::time::Instant::now() + std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(5),
    );
    billing::dns::run_renewals(
        &ledger,
        datetime!(2026-02-28 10:00 UTC),
        deadline,
        Default::default(),
    )
    .await
    .unwrap();

    // The business metrics are embedded-metric-format lines the publisher
    // writes per published event (no metric filter, no log level): summed
    // here from what it published, through the same function.
    let pumped = events.publish().await;
    assert_eq!(pumped.failed_batches, 0);
    assert!(
        !filters()
            .values()
            .any(|f| f.log_group == "EventsPublisherLogGroup" && f.namespace == "SkyPanelBilling"),
        "business metrics need no metric filter on INFO lines"
    );
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for record in &pumped.delivered {
        let outbox = record
            .pointer("/dynamodb/NewImage")
            .and_then(billing::events::OutboxRecord::from_stream_image)
            .expect("an outbox item");
        let (cents, action) = events_publisher_fn::metric_fields(&outbox.detail);
        for m in
            events_publisher_fn::business_metrics(&outbox.detail_type, cents, action.as_deref())
        {
            *sums.entry(m.name).or_default() += m.value;
        }
    }
    let expected = BTreeMap::from([
        ("Captures", 1),
        ("CreditsPurchasedCents", 1250),
        ("NeedsReview", 1),
        ("PastDue", 1),
        ("Refunds", 1),
        ("Renewals", 1),
    ]);
    assert_eq!(sums, expected);
}

#[tokio::test]
async fn the_webhook_signature_filter_counts_refused_deliveries_only() {
    let api = TestApi::new().await;
    let user = new_user();
    let (order_id, _) = paid(&api, "/api/billing/custom-credits", &user, "5").await;
    let capture_id = api.paypal.order(&order_id).unwrap().capture_ids[0].clone();
    let event = api
        .paypal
        .signed_event(EventType::CaptureCompleted, &capture_id)
        .unwrap();
    let headers: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = String::from_utf8(event.body.clone()).unwrap();
    // The same delivery with one byte changed: its signature no longer holds.
    let forged = body.replacen("COMPLETED", "COMPLETEd", 1);
    assert_ne!(forged, body);

    let captured = Captured::default();
    let (refused, accepted) = captured
        .during(async {
            let refused = api
                .call("POST", "/webhooks/paypal", None, Some(&forged), &headers)
                .await;
            let accepted = api
                .call("POST", "/webhooks/paypal", None, Some(&body), &headers)
                .await;
            (refused.status, accepted.status)
        })
        .await;
    assert_eq!((refused, accepted), (401, 200));
    let filters = filters();
    let failures = &filters["WebhookSignatureFailures"];
    assert_eq!(failures.log_group, "PayPalWebhookLogGroup");
    assert_eq!(metric(failures, &captured.lines()), 1);
}

#[test]
fn the_pattern_subset_reads_as_cloudwatch_does() {
    let line = json!({"level": "INFO", "fields": {"message": "m", "n": 5, "t": "x"}});
    let yes = |p: &str| Pattern::parse(p).matches(&line);
    assert!(yes(r#"{ $.fields.message = "m" }"#));
    assert!(yes(
        r#"{ $.fields.message = "m" && ($.fields.t = "y" || $.fields.n = 5) }"#
    ));
    assert!(!yes(r#"{ $.fields.message = "m" && $.fields.t = "y" }"#));
    assert!(!yes(r#"{ $.fields.absent = "m" }"#));
    assert!(yes(r#"{ $.fields.t != "y" }"#));
}

// ------------------------------------------------ every alarm has a source

/// Every `.rs` file of the functions and the shared crates (not tests).
fn sources() -> Vec<(std::path::PathBuf, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("tests") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    walk(&root.join("functions"), &mut out);
    walk(&root.join("shared"), &mut out);
    out
}

/// Every alarm on a metric of ours has a source the code really produces:
/// a metric filter whose pattern matches a line the code emits (ERROR lines
/// through the functions' own subscriber; the webhook signature filter is
/// driven end to end above), or an embedded-metric-format metric whose name
/// the code emits with `billing_config::metrics`.
#[test]
fn every_alarm_reads_a_metric_the_code_emits() {
    let template = template();
    let all = resources(&template);
    let filters = filters();
    // A line of each kind, written by the functions' subscriber at INFO.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = billing_config::json_subscriber(
        &billing_config::log_directives(Some("INFO"), None),
        move || writer.clone(),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!(
            order_id = "o1",
            "VirtFusion delivery outcome unknown; needs review"
        );
        tracing::warn!("a warning");
        tracing::info!("events published");
    });
    let lines = captured.lines();
    let error_line = &lines[0];
    let metric_line = billing_config::metrics::emf_line(
        &[billing_config::metrics::Metric::count("NeedsReview", 1)],
        &[],
        std::time::SystemTime::now(),
    );
    let sources = sources();
    let emf_emitters: Vec<&String> = sources
        .iter()
        .filter(|(_, text)| text.contains("Metric::count(") || text.contains("Metric {"))
        .map(|(_, text)| text)
        .collect();
    let mut checked = 0;
    for (name, alarm) in of_type(&all, "AWS::CloudWatch::Alarm") {
        let p = &alarm["Properties"];
        let Some(namespace) = p["Namespace"].as_str() else {
            continue;
        };
        if !namespace.starts_with("SkyPanelBilling") {
            continue;
        }
        let metric = p["MetricName"].as_str().expect("MetricName");
        checked += 1;
        if let Some(filter) = filters
            .values()
            .find(|f| f.metric == metric && f.namespace == namespace)
        {
            if namespace == "SkyPanelBilling/ErrorLines" {
                assert!(filter.pattern.matches(error_line), "{name}: {error_line}");
                for other in &lines[1..] {
                    assert!(!filter.pattern.matches(other), "{name} counts {other}");
                }
                assert!(
                    !filter.pattern.matches(&metric_line),
                    "{name} counts metric lines"
                );
            } else {
                assert_eq!(
                    metric, "WebhookSignatureFailures",
                    "{name}: a new metric filter needs a test of the line it counts"
                );
            }
            continue;
        }
        assert_eq!(namespace, billing_config::metrics::NAMESPACE, "{name}");
        let literal = format!("\"{metric}\"");
        assert!(
            emf_emitters.iter().any(|text| text.contains(&literal)),
            "{name}: no code emits the metric {namespace}/{metric}"
        );
    }
    assert!(checked >= 30, "{checked} alarms checked");
}
