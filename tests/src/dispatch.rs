//! The test dispatch of HTTP functions: a name (as in `template.yaml`'s
//! routes) → the function's own `handle` with its deps. [`crate::api::TestApi`]
//! registers every function once, one line next to its deps, each built
//! with that function's own credentials (local IAM checks its calls):
//!
//! ```ignore
//! f.register("dns-plans", core("dns-plans"), dns_plans_fn::handle);
//! f.register("admin-refunds", payment("admin-refunds"), admin_refunds_fn::handle);
//! ```

use lambda_http::{Body, Error, Request, Response};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What every HTTP function's `handle` returns.
pub type HandlerResult = Result<Response<Body>, Error>;

type BoxedHandler =
    Box<dyn Fn(Request) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync>;

/// A function's `handle(&Deps, Request)`: any `async fn` of that shape whose
/// future is `Send` (the tests call functions from parallel tasks).
pub trait Handler<'a, D: 'a>: Fn(&'a D, Request) -> Self::Future {
    type Future: Future<Output = HandlerResult> + Send + 'a;
}

impl<'a, D: 'a, F, Fut> Handler<'a, D> for F
where
    F: Fn(&'a D, Request) -> Fut,
    Fut: Future<Output = HandlerResult> + Send + 'a,
{
    type Future = Fut;
}

/// The registered functions, by name.
#[derive(Default)]
pub struct Functions {
    handlers: HashMap<&'static str, BoxedHandler>,
}

impl Functions {
    /// Registers `handle` under `name`, called with `deps`.
    pub fn register<D, H>(&mut self, name: &'static str, deps: D, handle: H)
    where
        D: Send + Sync + 'static,
        H: for<'a> Handler<'a, D> + Copy + Send + Sync + 'static,
    {
        self.share(name, &Arc::new(deps), handle);
    }

    /// Registers `handle` under `name` with deps that several functions
    /// share (the checkout, refund and webhook functions: one PayPal client).
    /// Registering a name twice is a bug in the harness and panics.
    pub fn share<D, H>(&mut self, name: &'static str, deps: &Arc<D>, handle: H)
    where
        D: Send + Sync + 'static,
        H: for<'a> Handler<'a, D> + Copy + Send + Sync + 'static,
    {
        let deps = Arc::clone(deps);
        let boxed: BoxedHandler = Box::new(move |request| {
            let deps = Arc::clone(&deps);
            // Boxed: some handlers' futures are large (clippy::large_futures).
            Box::pin(async move { handle(&deps, request).await })
        });
        let previous = self.handlers.insert(name, boxed);
        assert!(previous.is_none(), "function {name} registered twice");
    }

    /// Calls the function registered as `name` (panics for an unknown name:
    /// a route of `template.yaml` without a registration).
    pub async fn call(&self, name: &str, request: Request) -> HandlerResult {
        let handler = self
            .handlers
            .get(name)
            .unwrap_or_else(|| panic!("no test dispatch for function {name}"));
        handler(request).await
    }
}
