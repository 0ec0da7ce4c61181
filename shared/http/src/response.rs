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

/// A successful answer that is a file (a CSV export): its content type,
/// the name a browser saves it as (`Content-Disposition: attachment`) and
/// its text.
#[derive(Debug)]
pub struct FileResponse {
    pub content_type: &'static str,
    pub filename: String,
    pub body: String,
}

/// Runs a handler's work and turns its result into the HTTP response:
/// JSON body, `x-request-id`, errors mapped once, 5xx causes logged (never
/// returned). Every log line inside carries the request id.
pub async fn respond<F>(req: &Request, work: F) -> Result<Response<Body>, lambda_http::Error>
where
    F: Future<Output = Result<ApiResponse, ApiError>>,
{
    run(req, work, |ok: ApiResponse, request_id| {
        json_response(ok.status, &ok.body, request_id)
    })
    .await
}

/// [`respond`] for a file answer: 200 with the file as an attachment;
/// errors are the same JSON errors as everywhere.
pub async fn respond_file<F>(req: &Request, work: F) -> Result<Response<Body>, lambda_http::Error>
where
    F: Future<Output = Result<FileResponse, ApiError>>,
{
    run(req, work, |file: FileResponse, request_id| {
        // The name is ours (dates and letters), never user input; quoted anyway.
        let filename: String = file
            .filename
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        Ok(Response::builder()
            .status(200)
            .header("content-type", file.content_type)
            .header(
                "content-disposition",
                format!("attachment; filename=\"{filename}\""),
            )
            .header("cache-control", "no-store")
            .header("x-content-type-options", "nosniff")
            .header("x-request-id", request_id)
            .body(Body::Text(file.body))?)
    })
    .await
}

async fn run<F, T>(
    req: &Request,
    work: F,
    ok: impl FnOnce(T, &str) -> Result<Response<Body>, lambda_http::Error>,
) -> Result<Response<Body>, lambda_http::Error>
where
    F: Future<Output = Result<T, ApiError>>,
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
    let (status, body, retry_after) = match result {
        Ok(value) => {
            let response = ok(value, &request_id)?;
            let _guard = span.enter();
            tracing::info!(status = response.status().as_u16(), "request done");
            return Ok(response);
        }
        Err(err) => {
            let _guard = span.enter();
            if err.status == 500 {
                // Paged on one (HandledInternalErrorsAlarm), whatever the log level
                // or the request volume.
                billing_config::metrics::emit(
                    &[billing_config::metrics::Metric::count("Handled500", 1)],
                    &[
                        ("requestId", serde_json::json!(request_id)),
                        ("path", serde_json::json!(req.uri().path())),
                    ],
                );
            }
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
            (err.status, err.body(), err.retry_after)
        }
    };
    {
        let _guard = span.enter();
        tracing::info!(status, "request done");
    }
    let mut response = json_response(status, &body, &request_id)?;
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", lambda_http::http::HeaderValue::from(seconds));
    }
    Ok(response)
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
