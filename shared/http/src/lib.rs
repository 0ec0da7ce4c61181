//! The HTTP edge every function shares: authentication, request parsing,
//! and the single mapping from domain errors to the contract's status codes.
//!
//! A handler is `parse + authorize + call a service + map the response`:
//!
//! ```ignore
//! pub async fn handle(deps: &BaseDeps, req: Request) -> Result<Response<Body>, Error> {
//!     billing_http::respond(&req, async {
//!         let caller = deps.auth.caller(&req).await?;
//!         let balance = deps.ledger.balance(&caller.user).await?;
//!         Ok(ApiResponse::ok(json!({ "balance": balance })))
//!     }).await
//! }
//! ```

mod auth;
pub mod checkout;
mod deps;
mod error;
pub mod jwt;
mod request;
mod response;
pub mod views;

pub use auth::{Auth, Caller, JWT_SECRET};
pub use deps::{BaseDeps, PaymentDeps};
pub use error::ApiError;
pub use request::{
    MAX_BODY_BYTES, idempotency_key, json_body, path_param, query_param, request_id, valid_order_id,
};
pub use response::{ApiResponse, FileResponse, respond, respond_file};

pub use lambda_http::{Body, Error, Request, Response};
