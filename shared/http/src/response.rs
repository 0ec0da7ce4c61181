use crate::{ApiError, request_id};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use tracing::Instrument;

/// A successful response: status and JSON body.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    pub fn ok(body: impl Serialize) -> ApiResponse {
        ApiResponse::with_status(200, body)
    }

    pub fn with_status(status: u16, body: impl Serialize) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
        }
    }
}

/// Runs a handler's work and turns its result into the HTTP response:
/// JSON body, `x-request-id`, errors mapped once, 5xx causes logged (never
/// returned). Every log line inside carries the request id.
pub async fn respond<F>(req: &Request, work: F) -> Result<Response<Body>, lambda_http::Error>
where
    F: Future<Output = Result<ApiResponse, ApiError>>,
{
    let request_id = request_id(req);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    // Boxed: handler futures are large in debug builds; keep them off the stack.
    let result = Box::pin(work.instrument(span.clone())).await;
    let (status, body) = match result {
        Ok(ok) => (ok.status, ok.body),
        Err(err) => {
            let _guard = span.enter();
            if err.status >= 500 {
                tracing::error!(
                    status = err.status,
                    cause = err.cause.as_deref().unwrap_or(""),
                    "request failed"
                );
            } else {
                tracing::info!(
                    status = err.status,
                    code = err.code.unwrap_or(""),
                    "request refused"
                );
            }
            (err.status, err.body())
        }
    };
    {
        let _guard = span.enter();
        tracing::info!(status, "request done");
    }
    json_response(status, &body, &request_id)
}

pub(crate) fn json_response(
    status: u16,
    body: &Value,
    request_id: &str,
) -> Result<Response<Body>, lambda_http::Error> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("x-request-id", request_id)
        .body(Body::Text(body.to_string()))?)
}
