//! docs/openapi.yaml itself: it documents exactly the routes of
//! template.yaml, and its checker refuses what the contract refuses. (Every
//! other test checks the real responses against it through `TestApi`.)

use integration_tests::openapi::spec;
use serde_json::json;

#[test]
fn the_spec_documents_exactly_the_routes_of_the_template() {
    let template = devstack::template::Template::load(&devstack::template_path()).unwrap();
    let mut routes: Vec<(String, String)> = template
        .routes()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    routes.sort();
    let mut documented = spec().routes();
    documented.sort();
    assert_eq!(documented, routes);
}

#[test]
fn every_operation_documents_its_errors() {
    for (method, path) in spec().routes() {
        let statuses = spec().statuses(&method, &path);
        for status in ["401", "500", "503"] {
            assert!(
                statuses.contains(&status.to_string()),
                "{method} {path} does not document {status}: {statuses:?}"
            );
        }
        if path.starts_with("/api/admin/") {
            assert!(statuses.contains(&"403".to_string()), "{method} {path}");
        }
    }
}

#[test]
fn the_checker_refuses_what_the_contract_refuses() {
    let s = spec();
    let check = |status: u16, body: serde_json::Value| {
        s.violations(
            "GET",
            "/api/billing/balance",
            status,
            Some("application/json"),
            Some("req-1"),
            &body,
        )
    };
    let good = json!({
        "virtFusion": {"balance": 1250, "exact": "1250", "formatted": "1,250 Tokens", "available": true},
        "customCredits": {"balance": "12.50", "formatted": "$12.50"}
    });
    assert!(
        check(200, good.clone()).is_empty(),
        "{:?}",
        check(200, good)
    );
    let down = json!({
        "virtFusion": {"balance": null, "formatted": null, "available": false},
        "customCredits": {"balance": "0.00", "formatted": "$0.00"}
    });
    assert!(check(200, down).is_empty());
    // Money as a number, one place, or a float: refused.
    for balance in [json!(12.5), json!("12.5"), json!("1e3"), json!(12)] {
        let body = json!({
            "virtFusion": {"balance": 1, "formatted": "1 Token", "available": true},
            "customCredits": {"balance": balance, "formatted": "$12.50"}
        });
        assert!(!check(200, body).is_empty(), "{balance} accepted");
    }
    // Half available: refused.
    let mixed = json!({
        "virtFusion": {"balance": null, "formatted": null, "available": true},
        "customCredits": {"balance": "0.00", "formatted": "$0.00"}
    });
    assert!(!check(200, mixed).is_empty());
    // An undocumented field: refused.
    let mut extra = good.clone();
    extra["debug"] = json!("x");
    assert!(!check(200, extra).is_empty());
    // Errors: the error body, for documented statuses only.
    assert!(
        check(
            401,
            json!({"error": "Missing bearer token", "code": "unauthorized"})
        )
        .is_empty()
    );
    assert!(!check(401, json!({"message": "Unauthorized"})).is_empty());
    assert!(
        !check(404, json!({"error": "x"})).is_empty(),
        "404 is not documented here"
    );
    assert!(!check(418, json!({"error": "x"})).is_empty());
    // No request id, or not JSON: refused.
    assert!(
        !s.violations(
            "GET",
            "/api/billing/balance",
            401,
            Some("application/json"),
            None,
            &json!({"error": "x"})
        )
        .is_empty()
    );
    assert!(
        !s.violations(
            "GET",
            "/api/billing/balance",
            401,
            Some("text/plain"),
            Some("r"),
            &json!({"error": "x"})
        )
        .is_empty()
    );
}

#[test]
fn timestamps_are_checked_as_rfc3339() {
    let s = spec();
    let subscription = |start: &str| {
        json!({"subscription": {
            "id": "sub_1", "userId": "1001", "serviceType": "dns_plan", "interval": "month",
            "planId": "basic", "planName": "Basic", "pendingPlanId": null, "price": "5.00",
            "status": "active", "autoRenew": true, "startDate": start,
            "nextRenewalDate": "2025-12-25T12:00:00Z", "lastRenewalDate": null,
            "domainLimit": 5, "recordLimit": 100, "pastDueSince": null,
            "cancelledAt": null, "expiredAt": null
        }})
    };
    let check = |body| {
        s.violations(
            "GET",
            "/api/dns/subscription",
            200,
            Some("application/json"),
            Some("r"),
            &body,
        )
    };
    assert!(check(subscription("2025-11-25T12:00:00.123Z")).is_empty());
    assert!(!check(subscription("yesterday")).is_empty());
    assert!(check(json!({"subscription": null})).is_empty());
}
