//! Serves the built billing page (`web/dist`) locally, on its own origin (as
//! CloudFront or the operator's panel serves it in production, apart from the
//! API): files by path, `index.html` for any other GET (the page routes on the
//! client), and the runtime configuration (API address, PayPal adapter) at
//! `/config.json` from a file the run command writes.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{0}: no index.html (build the page first: cd web && npm ci && npm run build)")]
    NotBuilt(String),
    #[error("bind/serve: {0}")]
    Io(#[from] std::io::Error),
}

/// The directory served and the optional `/config.json` file.
#[derive(Clone, Debug)]
pub struct Site {
    dir: PathBuf,
    config: Option<PathBuf>,
}

impl Site {
    pub fn new(dir: PathBuf, config: Option<PathBuf>) -> Result<Site, SiteError> {
        if !dir.join("index.html").is_file() {
            return Err(SiteError::NotBuilt(dir.display().to_string()));
        }
        Ok(Site { dir, config })
    }

    /// The file for a request path: never outside `dir` (no `..`, no absolute parts).
    pub fn resolve(&self, path: &str) -> Option<PathBuf> {
        let relative = Path::new(path.trim_start_matches('/'));
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let candidate = self.dir.join(relative);
        candidate.is_file().then_some(candidate)
    }
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "map" => "application/json",
        _ => "application/octet-stream",
    }
}

fn answer(status: StatusCode, kind: &'static str, body: Vec<u8>, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn handle(State(site): State<Arc<Site>>, request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            b"method not allowed".to_vec(),
            "no-store",
        );
    }
    let path = request.uri().path();
    if path == "/config.json" {
        let body = match &site.config {
            Some(file) => tokio::fs::read(file)
                .await
                .unwrap_or_else(|_| b"{}".to_vec()),
            None => b"{}".to_vec(),
        };
        return answer(StatusCode::OK, "application/json", body, "no-store");
    }
    // Hashed assets are immutable; everything else is revalidated.
    let (file, cache) = match site.resolve(path) {
        Some(file) if path.starts_with("/assets/") => (file, "public, max-age=31536000, immutable"),
        Some(file) => (file, "no-cache"),
        None => (site.dir.join("index.html"), "no-cache"),
    };
    match tokio::fs::read(&file).await {
        Ok(body) => answer(StatusCode::OK, content_type(&file), body, cache),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read");
            answer(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                b"not found".to_vec(),
                "no-store",
            )
        }
    }
}

pub fn router(site: Site) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(site))
}

/// Serves `site` at `addr` until Ctrl-C or SIGTERM.
pub async fn serve(addr: SocketAddr, site: Site) -> Result<(), SiteError> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, dir = %site.dir.display(), "billing page served");
    axum::serve(listener, router(site))
        .with_graceful_shutdown(crate::gateway::shutdown_signal())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_serves_outside_the_directory() {
        let dir = std::env::temp_dir().join(format!("webpage-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<html></html>").unwrap();
        std::fs::write(dir.join("assets/app.js"), "1").unwrap();
        let site = Site::new(dir.clone(), None).unwrap();
        assert_eq!(
            site.resolve("/assets/app.js"),
            Some(dir.join("assets/app.js"))
        );
        assert_eq!(site.resolve("/../Cargo.toml"), None);
        assert_eq!(site.resolve("/assets/../../etc/passwd"), None);
        assert_eq!(site.resolve("/admin"), None);
        assert!(Site::new(dir.join("assets"), None).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
