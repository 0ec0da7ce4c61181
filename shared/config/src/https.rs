//! The AWS SDK clients' HTTPS client: the same reqwest stack (hyper 1,
//! rustls on aws-lc, HTTP/1.1) that the PayPal and VirtFusion clients use,
//! built at the first request.
//!
//! Why not the SDK's default client: it is a second HTTPS stack beside
//! reqwest in every function (its own connector, hyper-rustls and HTTP/2,
//! which DynamoDB, Secrets Manager, EventBridge and SQS do not need), about
//! 150 KB of each zip (docs/benchmarks.md, "Artifact sizes"). And it builds
//! a connector, loading the platform's root certificates (~15 ms), when
//! `Client::from_conf` runs at init; here the reqwest client, and with it
//! the root store, is made when the first request asks for one, then shared
//! by every SDK client of the process (one per timeout settings).

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::ErrorKind;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::body::SdkBody;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The HTTPS client for the AWS SDK clients, its connections (and root
/// store) made on first use.
pub fn lazy_https_client() -> SharedHttpClient {
    ReqwestHttpClient::default().into_shared()
}

type TimeoutKey = (Option<Duration>, Option<Duration>);

#[derive(Debug, Default)]
struct ReqwestHttpClient {
    // One reqwest client (one connection pool) per timeout settings, as the
    // SDK's own client caches its connectors.
    clients: Mutex<HashMap<TimeoutKey, SharedHttpConnector>>,
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(key)
            .or_insert_with(|| ReqwestConnector::new(key).into_shared())
            .clone()
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    // The builder's error (no root certificates) is answered to every
    // request, as a connector that cannot connect would.
    client: Result<reqwest::Client, String>,
}

impl ReqwestConnector {
    fn new((connect_timeout, read_timeout): TimeoutKey) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Lambda freezes the process between requests; an idle pooled
            // connection older than this is likely closed by the far end.
            .pool_idle_timeout(Duration::from_secs(50));
        if let Some(timeout) = connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = read_timeout {
            builder = builder.read_timeout(timeout);
        }
        Self {
            client: builder.build().map_err(|e| e.to_string()),
        }
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(message) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::other(
                    message.clone().into(),
                    None,
                )));
            }
        };
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request)?;
            let response = client.execute(request).await.map_err(to_connector_error)?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(to_connector_error)?;
            let mut http = http::Response::new(SdkBody::from(body));
            *http.status_mut() = http::StatusCode::from_u16(status)
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            *http.headers_mut() = headers;
            HttpResponse::try_from(http).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The signed SDK request as a reqwest request. The AWS APIs called here
/// send bodies held in memory; a streaming body is refused, not guessed at.
fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (parts, body) = request.into_parts();
    let Some(bytes) = body.bytes() else {
        return Err(ConnectorError::user(
            "streaming request bodies are not supported".into(),
        ));
    };
    let request = http::Request::from_parts(parts, bytes.to_vec());
    reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))
}

/// Classified as the SDK's own client does, so its retry rules see the same
/// kinds: timeouts and broken connections are transient, a refused request
/// (bad URL, bad header) is the caller's.
fn to_connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        return ConnectorError::timeout(err.into());
    }
    if err.is_builder() {
        return ConnectorError::user(err.into());
    }
    if let Some(hyper) = find_source::<hyper::Error>(&err) {
        if hyper.is_incomplete_message() {
            return ConnectorError::other(err.into(), Some(ErrorKind::TransientError));
        }
        if hyper.is_closed() || hyper.is_canceled() {
            return ConnectorError::io(err.into());
        }
    }
    if err.is_connect()
        || err.is_request()
        || err.is_body()
        || find_source::<std::io::Error>(&err).is_some()
    {
        return ConnectorError::io(err.into());
    }
    ConnectorError::other(err.into(), None)
}

fn find_source<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<E>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}
