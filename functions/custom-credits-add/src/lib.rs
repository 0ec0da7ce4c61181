//! `POST /api/billing/custom-credits/add`: creates a PayPal order for custom credits ($1–$1000, balance cap checked first).

use billing::orders::PurchaseKind;
use billing_http::PaymentDeps;
use billing_http::checkout::handle_order;
use billing_http::{Body, Error, Request, Response};

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    handle_order(deps, req, PurchaseKind::Credits).await
}
