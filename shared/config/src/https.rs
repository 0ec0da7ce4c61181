//! The AWS SDK clients' HTTPS client, with its TLS root store read at the
//! first request instead of when a client is built.
//!
//! The SDK's default client (hyper 1, rustls with aws-lc) builds a connector
//! in `validate_base_client_config`, that is when `Client::from_conf` runs at
//! init, only so that the platform's root certificates are loaded then
//! (rustls-native-certs: the CA bundle and every file of the certificate
//! directory, about 15 ms of a 23 ms init measured locally; docs/benchmarks.md,
//! "Cold start proxy"). This wrapper is the same client minus that early
//! build: the first connector, and with it the root store, is made when the
//! first request asks for one, then cached by the SDK as before (one
//! connector per timeout settings, shared by every client of the process).

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::config_bag::ConfigBag;

/// The SDK's default HTTPS client, its connectors (and root store) built on
/// first use.
pub fn lazy_https_client() -> SharedHttpClient {
    // As aws-smithy-runtime's `default_https_client` for the current behavior
    // version: rustls on aws-lc, the settings' timeouts, the runtime's sleep,
    // proxies from the environment.
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc));
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(ProxyConfig::from_env()));
        builder.build()
    });
    LazyConnector(client).into_shared()
}

#[derive(Debug)]
struct LazyConnector(SharedHttpClient);

impl HttpClient for LazyConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    // `validate_base_client_config` keeps the trait's default (nothing to
    // check): the wrapped client's would build a connector there.

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}
