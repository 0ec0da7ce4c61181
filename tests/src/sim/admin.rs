//! The shared and admin steps of a world: the delivery job, review
//! settlements, reconciliation, admin credits and tokens, service charges.

use super::world::{ADMIN, Outcome, World, money};
use crate::api::{TestResponse, VIRTFUSION_TOKEN};
use devstack::virtfusion::FailureMode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl World {
    pub(super) fn virtfusion_client(&self) -> virtfusion::VirtFusionClient {
        virtfusion::VirtFusionClient::new(
            &self.api.virtfusion.base_url(),
            billing_config::SecretValue::new(VIRTFUSION_TOKEN),
            Duration::from_millis(500),
        )
        .expect("virtfusion client")
    }

    /// One run of the delivery retries (the renewal job's part), its clock
    /// 7 h after the last run's, so every backed-off delivery is due.
    pub async fn delivery_job(&mut self) -> Outcome {
        self.jobs += 1;
        let now = time::OffsetDateTime::now_utc() + time::Duration::hours(7 * self.jobs);
        let client = self.virtfusion_client();
        let summary = billing::deliveries::retry_pending(
            &self.api.function_ledger("renewal-cron"),
            Some(&client),
            50,
            now,
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .map_err(|e| format!("[job] delivery job failed: {e}"))?;
        self.note(format!("delivery job: {summary:?}"));
        Ok(())
    }

    /// What VirtFusion shows for a reference (order id or grant id).
    pub fn credits_for(&self, reference: &str) -> Vec<devstack::virtfusion::Credit> {
        self.api
            .virtfusion
            .credits()
            .into_iter()
            .filter(|c| c.reference_2.as_deref() == Some(reference))
            .collect()
    }

    /// The review list, each item settled as a careful admin would: by
    /// looking at what VirtFusion shows.
    pub async fn settle_reviews(&mut self) -> Outcome {
        let admin = self.api.token(ADMIN, true);
        let listed = self
            .api
            .get(
                "/api/admin/virtfusion-deliveries?status=needs_review",
                &admin,
            )
            .await;
        if listed.status != 200 {
            return Err(format!("[answer] review list answered {}", listed.status));
        }
        let items = listed.body["items"].as_array().cloned().unwrap_or_default();
        for item in items {
            let id = item["orderId"].as_str().unwrap_or_default().to_owned();
            let why = match billing::orders::load(&self.api.ledger(), &id).await {
                Ok(Some(order)) => order.review_reason.unwrap_or_default(),
                _ => item["reviewReason"].as_str().unwrap_or_default().to_owned(),
            };
            let delivered = if item["operation"] == json!("removal") {
                let credit = item["creditId"].as_u64();
                !self
                    .api
                    .virtfusion
                    .credits()
                    .iter()
                    .any(|c| Some(c.id) == credit)
            } else {
                !self.credits_for(&id).is_empty()
            };
            let mut body = json!({
                "delivered": delivered,
                "reason": format!("VirtFusion shows {}", if delivered { "it" } else { "nothing" }),
            });
            // A careful admin names the credit found (VirtFusion's panel shows its id).
            if delivered
                && item["operation"] != json!("removal")
                && let Some(credit) = self.credits_for(&id).first()
            {
                body["creditId"] = json!(credit.id);
            }
            let response = self
                .api
                .send(
                    "POST",
                    &format!("/api/admin/virtfusion-deliveries/{id}/resolve"),
                    &admin,
                    &body.to_string(),
                )
                .await;
            self.note(format!(
                "review {id} ({why}) settled delivered={delivered}: {}",
                response.status
            ));
            if response.status != 200 {
                return Err(format!(
                    "[review] settling {id} answered {}: {}",
                    response.status, response.body
                ));
            }
        }
        Ok(())
    }

    pub async fn reconcile(&mut self) -> Outcome {
        let paypal = paypal::PayPalClient::new(
            &self.api.paypal.base_url(),
            billing_config::SecretValue::new(crate::api::PAYPAL_CLIENT.0),
            billing_config::SecretValue::new(crate::api::PAYPAL_CLIENT.1),
            Duration::from_secs(5),
        )
        .expect("paypal client");
        let deps = reconcile_cron_fn::Deps::new(self.api.function_ledger("reconcile-cron"))
            .with_clients(paypal, Some(self.virtfusion_client()));
        let event = json!({"version": "0", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": ledger::now_rfc3339(), "detail": {}});
        let event = lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default());
        let summary = reconcile_cron_fn::handle(&deps, event)
            .await
            .map_err(|e| format!("[job] reconciliation failed: {e:?}"))?;
        self.note(format!("reconciliation: {summary}"));
        Ok(())
    }

    pub(super) async fn admin_credits(&mut self, u: usize, cents: i64, grant: bool) -> Outcome {
        let admin = self.api.token(ADMIN, true);
        let user = self.users[u].id.clone();
        let response = self
            .api
            .send(
                if grant { "POST" } else { "DELETE" },
                &format!("/api/admin/users/{user}/custom-credits"),
                &admin,
                &json!({"amount": money(cents), "reason": "simulated"}).to_string(),
            )
            .await;
        self.note(format!(
            "admin {} {} credits of u{u}: {}",
            if grant { "grants" } else { "removes" },
            money(cents),
            response.status
        ));
        match response.status {
            200 => {
                self.users[u].adjust_cents += if grant { cents } else { -cents };
                Ok(())
            }
            400 if !grant => Ok(()),
            other => Err(format!(
                "[answer] admin credits answered {other}: {}",
                response.body
            )),
        }
    }

    pub(super) async fn admin_tokens_call(
        &self,
        method: &str,
        path: &str,
        body: &Value,
        key: &str,
    ) -> TestResponse {
        let token = self.api.token(ADMIN, true);
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        self.api
            .call(
                method,
                path,
                Some(&token),
                Some(&body.to_string()),
                &headers,
            )
            .await
    }

    pub(super) async fn admin_token_grant(
        &mut self,
        u: usize,
        tokens: i64,
        lost_answer: bool,
    ) -> Outcome {
        self.users[u].intents += 1;
        self.users[u].grant_intents += 1;
        let user = self.users[u].id.clone();
        let key = format!("sim-grant-{user}-{}", self.users[u].intents);
        let path = format!("/api/admin/users/{user}/virtfusion-tokens");
        let body = json!({"tokens": tokens, "reason": "simulated grant"});
        if lost_answer {
            self.api
                .virtfusion
                .set_failure(FailureMode::ApplyThenHang, Some(1));
        }
        let first = self.admin_tokens_call("POST", &path, &body, &key).await;
        if lost_answer {
            self.api.virtfusion.clear_failure();
        }
        let again = if lost_answer {
            Some(
                self.admin_tokens_call("POST", &path, &body, &key)
                    .await
                    .status,
            )
        } else {
            None
        };
        self.note(format!(
            "admin grants {tokens} tokens to u{u} (lost {lost_answer}): {} then {again:?}",
            first.status
        ));
        Ok(())
    }

    pub(super) async fn admin_token_remove(&mut self, u: usize, r: usize) -> Outcome {
        let user = self.users[u].id.clone();
        let grants: Vec<u64> = self
            .api
            .virtfusion
            .credits()
            .into_iter()
            .filter(|c| {
                c.user == user.as_str()
                    && c.reference_2
                        .as_deref()
                        .is_some_and(|r| r.starts_with(billing::admin_tokens::GRANT_PREFIX))
            })
            .map(|c| c.id)
            .collect();
        if grants.is_empty() {
            return Ok(());
        }
        self.users[u].intents += 1;
        let credit = grants[r % grants.len()];
        let key = format!("sim-remove-{user}-{}", self.users[u].intents);
        let response = self
            .admin_tokens_call(
                "DELETE",
                &format!("/api/admin/users/{user}/virtfusion-tokens/{credit}"),
                &json!({"reason": "simulated removal"}),
                &key,
            )
            .await;
        self.note(format!(
            "admin removes credit {credit} of u{u}: {}",
            response.status
        ));
        Ok(())
    }

    pub(super) async fn service_charge(&mut self, u: usize, cents: i64, retried: bool) -> Outcome {
        self.users[u].intents += 1;
        let user = self.users[u].id.clone();
        let key = format!("sim-charge-{user}-{}", self.users[u].intents);
        let service = self.api.service_token("svc-sim");
        let body = json!({
            "userId": user.as_str(),
            "amount": money(cents),
            "serviceType": "dedicated_server",
            "serviceId": format!("srv-{}", self.users[u].intents),
            "description": "simulated charge",
        });
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key.as_str()),
        ];
        let mut charged = false;
        for _ in 0..if retried { 2 } else { 1 } {
            let response = self
                .api
                .call(
                    "POST",
                    "/api/services/charges",
                    Some(&service),
                    Some(&body.to_string()),
                    &headers,
                )
                .await;
            self.note(format!(
                "charge {} to u{u}: {}",
                money(cents),
                response.status
            ));
            match response.status {
                200 => charged = true,
                402 => {}
                other => {
                    return Err(format!(
                        "[answer] charge answered {other}: {}",
                        response.body
                    ));
                }
            }
        }
        if charged {
            self.users[u].adjust_cents -= cents;
        }
        Ok(())
    }

    /// Every VirtFusion credit by reference.
    pub fn credits_by_reference(&self) -> BTreeMap<String, Vec<devstack::virtfusion::Credit>> {
        let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for credit in self.api.virtfusion.credits() {
            out.entry(credit.reference_2.clone().unwrap_or_default())
                .or_default()
                .push(credit);
        }
        out
    }
}
