//! The API Gateway HTTP API payload v2.0 event of one request, as AWS sends
//! it to the function (built as JSON: `aws_lambda_events`'
//! `ApiGatewayV2httpRequest` also serializes the Custom Authorizer v1 fields
//! — `type`, `methodArn`, `httpMethod` defaulting to `GET`,
//! `identitySource`, `authorizationToken` — which API Gateway never sends).

use super::routing::{path_parameters, percent_decode};
use super::{ACCOUNT_ID, API_ID};
use crate::template::RouteDef;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

/// `queryStringParameters`: decoded, repeated keys comma-joined, in order.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut params = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        let value = percent_decode(value);
        match params.get_mut(&key) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                params.insert(key, Value::String(value));
            }
        }
    }
    params
}

/// A function URL (served locally under `/webhooks/...`) has no route key.
fn is_function_url(route: &RouteDef) -> bool {
    route.path.starts_with("/webhooks/")
}

/// Builds the API Gateway HTTP API payload v2.0 event for one request, as
/// AWS sends it to the function.
#[allow(clippy::too_many_arguments)]
pub fn apigw_v2_event(
    route: &RouteDef,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(String, String)],
    body: &[u8],
    request_id: &str,
    source_ip: &str,
) -> Value {
    let method = method.to_ascii_uppercase();
    let mut header_map = Map::new();
    let mut cookies: Vec<Value> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
            continue;
        }
        match header_map.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                header_map.insert(name, Value::String(value.clone()));
            }
        }
    }

    // What API Gateway adds on its way in.
    let forwarded_for = match header_map.get("x-forwarded-for").and_then(Value::as_str) {
        Some(existing) if !existing.is_empty() => format!("{existing}, {source_ip}"),
        _ => source_ip.to_owned(),
    };
    header_map.insert("x-forwarded-for".into(), Value::String(forwarded_for));
    header_map
        .entry("x-forwarded-proto")
        .or_insert_with(|| Value::String("http".into()));
    let now = time::OffsetDateTime::now_utc();
    let epoch_ms = now.unix_timestamp() * 1000 + i64::from(now.millisecond());
    if !header_map.contains_key("x-amzn-trace-id") {
        let hex: String = request_id
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(24)
            .collect();
        header_map.insert(
            "x-amzn-trace-id".into(),
            Value::String(format!("Root=1-{:08x}-{hex:0<24}", now.unix_timestamp())),
        );
    }
    if !body.is_empty() && !header_map.contains_key("content-length") {
        header_map.insert(
            "content-length".into(),
            Value::String(body.len().to_string()),
        );
    }

    let host = header_map
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or("localhost")
        .to_owned();
    let domain_name = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_owned();
    let domain_prefix = domain_name.split('.').next().unwrap_or_default().to_owned();
    let user_agent = header_map
        .get("user-agent")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let route_key = if is_function_url(route) {
        "$default".to_owned()
    } else {
        format!("{} {}", route.method.to_ascii_uppercase(), route.path)
    };
    let time_text = now
        .format(time::macros::format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();

    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(route_key));
    event.insert("rawPath".into(), json!(raw_path));
    event.insert("rawQueryString".into(), json!(raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(header_map));
    let query = query_parameters(raw_query);
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    let path_params = path_parameters(route, raw_path);
    if !path_params.is_empty() && !is_function_url(route) {
        let params: Map<String, Value> = path_params
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        event.insert("pathParameters".into(), Value::Object(params));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": time_text,
            "timeEpoch": epoch_ms,
        }),
    );
    let is_base64 = match std::str::from_utf8(body) {
        Ok(text) => {
            if !text.is_empty() {
                event.insert("body".into(), json!(text));
            }
            false
        }
        Err(_) => {
            event.insert("body".into(), json!(BASE64.encode(body)));
            true
        }
    };
    event.insert("isBase64Encoded".into(), json!(is_base64));
    Value::Object(event)
}
