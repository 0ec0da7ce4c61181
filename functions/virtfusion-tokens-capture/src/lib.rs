//! `POST /api/billing/virtfusion-tokens/capture`: captures the caller's PayPal order and delivers the tokens to VirtFusion exactly once (pending / needs_review when it cannot).

use billing::orders::PurchaseKind;
use billing_http::PaymentDeps;
use billing_http::checkout::handle_capture;
use billing_http::{Body, Error, Request, Response};

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    handle_capture(deps, req, PurchaseKind::Tokens).await
}
