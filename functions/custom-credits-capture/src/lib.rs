//! `POST /api/billing/custom-credits/capture`: captures the caller's PayPal order and credits what PayPal captured, exactly once.

use billing::orders::PurchaseKind;
use billing_http::PaymentDeps;
use billing_http::checkout::handle_capture;
use billing_http::{Body, Error, Request, Response};

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    handle_capture(deps, req, PurchaseKind::Credits).await
}
