//! `POST /api/billing/virtfusion-tokens/add`: creates a PayPal order for VirtFusion tokens (100 per $1).

use billing::orders::PurchaseKind;
use billing_http::PaymentDeps;
use billing_http::checkout::handle_order;
use billing_http::{Body, Error, Request, Response};

pub async fn handle(deps: &PaymentDeps, req: Request) -> Result<Response<Body>, Error> {
    handle_order(deps, req, PurchaseKind::Tokens).await
}
