//! Reading requests strictly: bounded bodies, JSON only, 400 for anything malformed.

use crate::ApiError;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde::de::DeserializeOwned;

/// Request bodies larger than this are refused (every body of the API is tiny).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The Lambda request id (also returned as `x-request-id`).
pub fn request_id(req: &Request) -> String {
    if let Some(ctx) = req.lambda_context_ref()
        && !ctx.request_id.is_empty()
    {
        return ctx.request_id.clone();
    }
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// Parses the JSON body into `T` (whose serde attributes should deny unknown fields).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            400,
            "Request body is too large",
            "body_too_large",
        ));
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("A JSON request body is required"));
    }
    if let Some(content_type) = req.headers().get("content-type") {
        let is_json = content_type
            .to_str()
            .map(|v| v.to_ascii_lowercase().contains("json"))
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::bad_request(
                "Content-Type must be application/json",
            ));
        }
    }
    // Every body of the API is an object. serde's derived structs also read a
    // JSON array positionally (`["O1"]` as `{"orderId": "O1"}`), past
    // `deny_unknown_fields`: refuse anything but an object first (found by
    // the request_body fuzz target).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_owned)
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_owned)
}

/// The optional `Idempotency-Key`: 1–255 printable ASCII characters.
pub fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let invalid =
        || ApiError::bad_request("Idempotency-Key must be 1-255 printable ASCII characters");
    let text = value.to_str().map_err(|_| invalid())?;
    if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(invalid());
    }
    Ok(Some(text.to_owned()))
}

/// PayPal order ids are short alphanumeric strings.
pub fn valid_order_id(raw: &str) -> Result<&str, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(raw)
    } else {
        Err(ApiError::bad_request("orderId is invalid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct CaptureBody {
        #[serde(rename = "orderId")]
        order_id: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct ResolveBody {
        delivered: bool,
        reason: String,
    }

    fn request(body: &[u8]) -> Request {
        let mut req = Request::new(Body::from(body.to_vec()));
        req.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        req
    }

    /// Regression (fuzz/request_body, input `N[""]`): a JSON array was read
    /// positionally into the struct, bypassing the field names.
    #[test]
    fn arrays_are_not_bodies() {
        for body in [&br#"[""]"#[..], br#" ["O1"]"#, b"\n[\"O1\"]"] {
            let err = json_body::<CaptureBody>(&request(body)).unwrap_err();
            assert_eq!(err.status, 400, "{body:?}");
        }
        let err = json_body::<ResolveBody>(&request(br#"[true, "done"]"#)).unwrap_err();
        assert_eq!(err.status, 400);
        for body in ["\"O1\"", "1", "null", "true"] {
            assert!(json_body::<CaptureBody>(&request(body.as_bytes())).is_err());
        }
    }

    #[test]
    fn objects_are_read() {
        let body: CaptureBody = json_body(&request(b" \r\n{\"orderId\": \"O1\"}")).unwrap();
        assert_eq!(body.order_id, "O1");
        assert!(json_body::<CaptureBody>(&request(br#"{"orderId":"O1","x":1}"#)).is_err());
    }
}
