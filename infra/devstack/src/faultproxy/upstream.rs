//! Forwarding to DynamoDB, and the DynamoDB-shaped answers the proxy makes up.

use super::Shared;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const AMZ_JSON: &str = "application/x-amz-json-1.0";
const EXCEPTION_PREFIX: &str = "com.amazonaws.dynamodb.v20120810#";

pub(super) struct Upstream {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = self.status;
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

pub(super) async fn forward(
    shared: &Shared,
    operation: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> Result<Upstream, Response> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", shared.upstream);
    let mut request = shared.http.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name.clone(), value.clone());
        }
    }
    shared.count(|s| &mut s.forwarded, operation);
    let failed = |e: reqwest::Error| {
        shared.lock().stats.upstream_failures += 1;
        tracing::warn!(error = %e, %url, "fault proxy: upstream unreachable");
        dynamo_error(
            StatusCode::BAD_GATEWAY,
            "ServiceUnavailable",
            &format!("upstream unreachable: {e}"),
        )
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(failed)?;
    Ok(Upstream {
        status,
        headers,
        body,
    })
}

fn dynamo_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string().to_uppercase())
    {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

pub(super) fn dynamo_error(status: StatusCode, exception: &str, message: &str) -> Response {
    dynamo_response(
        status,
        json!({"__type": format!("{EXCEPTION_PREFIX}{exception}"), "message": message}),
    )
}

/// Local IAM's refusal, shaped as `service` answers it (HTTP 400).
pub(super) fn access_denied(service: crate::iam::Service, message: &str) -> Response {
    let mut response = (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"__type": service.access_denied_type(), "message": message})),
    )
        .into_response();
    let content_type = if service == crate::iam::Service::DynamoDb {
        AMZ_JSON
    } else {
        "application/x-amz-json-1.1"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if service == crate::iam::Service::Sqs {
        response.headers_mut().insert(
            "x-amzn-query-error",
            HeaderValue::from_static("AccessDenied;Sender"),
        );
    }
    response
}

pub(super) fn internal_error() -> Response {
    dynamo_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "Internal server error",
    )
}

/// DynamoDB's answer to a transaction that lost a conflict: one reason per
/// item of the request, `TransactionConflict` for the first, `None` for the rest.
pub(super) fn transaction_conflict(body: &[u8]) -> Response {
    dynamo_response(StatusCode::BAD_REQUEST, conflict_body(body))
}

fn conflict_body(body: &[u8]) -> Value {
    let items = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("TransactItems")
                .and_then(Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(1)
        .max(1);
    let mut codes = Vec::with_capacity(items);
    let mut reasons = Vec::with_capacity(items);
    for i in 0..items {
        if i == 0 {
            codes.push("TransactionConflict");
            reasons.push(json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}));
        } else {
            codes.push("None");
            reasons.push(json!({"Code": "None"}));
        }
    }
    json!({
        "__type": format!("{EXCEPTION_PREFIX}TransactionCanceledException"),
        "message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
        "CancellationReasons": reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellations_carry_one_reason_per_item() {
        let body = conflict_body(br#"{"TransactItems": [{}, {}, {}]}"#);
        assert_eq!(
            body,
            json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons \
                            [TransactionConflict, None, None]",
                "CancellationReasons": [
                    {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                    {"Code": "None"},
                    {"Code": "None"},
                ],
            })
        );
        assert_eq!(
            transaction_conflict(b"{}").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
