//! The listener supervision both HTTP stand-ins share: serve while the phase
//! is `Serving`; while `Refusing`, keep no socket open (connections are
//! refused, as from a service that is down), then bind the same address
//! again; stop at `Shutdown`.

use axum::Router;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where a stand-in's listener stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    Refusing,
    Shutdown,
}

/// What [`supervise`] needs of a stand-in's shared state.
pub(crate) trait Supervised: Send + Sync + 'static {
    fn phase(&self) -> &watch::Sender<Phase>;
    /// When a timed refusal ends (`None`: refused until told otherwise).
    fn refuse_until(&self) -> Option<Instant>;
    /// Back to `Serving` if the refusal ending at `until` is still the current one.
    fn end_refusal_if_due(&self, until: Instant);
}

/// Serves `app` on `first` (then on the same address) following the phase;
/// `name` names the stand-in in the logs.
pub(crate) async fn supervise<S: Supervised>(
    name: &'static str,
    shared: Arc<S>,
    first: TcpListener,
    app: Router,
) {
    let addr = match first.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::error!(error = %e, "{name} stand-in has no address");
            return;
        }
    };
    let mut listener = Some(first);
    let mut phase = shared.phase().subscribe();
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Shutdown => return,
            Phase::Refusing => {
                // Refused from the start (before the first listener was
                // served): close it too, or the kernel would still accept.
                listener = None;
                match shared.refuse_until() {
                    Some(until) => {
                        tokio::select! {
                            changed = phase.changed() => if changed.is_err() { return },
                            () = tokio::time::sleep_until(until.into()) => shared.end_refusal_if_due(until),
                        }
                    }
                    None => {
                        if phase.changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
            Phase::Serving => {
                let bound = match listener.take() {
                    Some(bound) => bound,
                    None => match TcpListener::bind(addr).await {
                        Ok(bound) => bound,
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "{name} stand-in cannot bind again; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let mut stop = shared.phase().subscribe();
                let server = axum::serve(bound, app.clone()).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|p| *p != Phase::Serving).await;
                });
                tokio::spawn(async move {
                    if let Err(e) = server.await {
                        tracing::warn!(error = %e, "{name} stand-in server stopped");
                    }
                });
                if phase.wait_for(|p| *p != Phase::Serving).await.is_err() {
                    return;
                }
            }
        }
    }
}
