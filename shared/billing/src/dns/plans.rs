//! DNS plans: `pk=PLAN#<id>`, `sk=PLAN`, listed through the sparse index
//! `gsi1` (`gsi1pk=PLAN`, `gsi1sk=<id>`), so listing never scans the table.

use crate::BillingError;
use crate::store::attrs::{corrupt, get_bool, get_s, get_u32, get_usd, n, s, usd};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use billing_money::Usd;
use ledger::{AttrMap, Ledger, LedgerError};
use std::collections::HashMap;

pub const PLAN_SK: &str = "PLAN";
/// `gsi1pk` of every plan item.
pub const PLAN_INDEX_PK: &str = "PLAN";
/// The index plans (and due subscriptions) are found through.
pub const INDEX_NAME: &str = "gsi1";
/// Listing reads at most this many plans (one Query page, one BatchGetItem).
pub const MAX_PLANS: usize = 100;

/// A plan id: 1-64 characters of `a-z`, `0-9`, `-`, `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanId(String);

impl PlanId {
    pub fn parse(raw: &str) -> Option<PlanId> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ok.then(|| PlanId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn pk(&self) -> String {
        format!("PLAN#{}", self.0)
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    pub name: String,
    pub description: String,
    /// Monthly price; what a new subscription pays and renews at.
    pub price: Usd,
    pub domain_limit: u32,
    pub record_limit: u32,
    /// Inactive plans are not listed and cannot be bought; existing
    /// subscriptions of them keep renewing.
    pub active: bool,
}

impl Plan {
    pub fn to_item(&self) -> AttrMap {
        let mut item = AttrMap::new();
        item.insert("pk".into(), s(self.id.pk()));
        item.insert("sk".into(), s(PLAN_SK));
        item.insert("gsi1pk".into(), s(PLAN_INDEX_PK));
        item.insert("gsi1sk".into(), s(self.id.as_str()));
        item.insert("id".into(), s(self.id.as_str()));
        item.insert("name".into(), s(&self.name));
        item.insert("description".into(), s(&self.description));
        item.insert("price".into(), usd(self.price));
        item.insert("domainLimit".into(), n(self.domain_limit));
        item.insert("recordLimit".into(), n(self.record_limit));
        item.insert("active".into(), AttributeValue::Bool(self.active));
        item
    }

    pub fn from_item(item: &AttrMap) -> Result<Plan, BillingError> {
        let id = PlanId::parse(get_s(item, "id")?)
            .ok_or_else(|| corrupt(item, "id is not a plan id"))?;
        let price = get_usd(item, "price")?;
        if !price.is_positive() {
            return Err(corrupt(item, "price must be more than 0"));
        }
        Ok(Plan {
            id,
            name: get_s(item, "name")?.to_owned(),
            description: get_s(item, "description")?.to_owned(),
            price,
            domain_limit: get_u32(item, "domainLimit")?,
            record_limit: get_u32(item, "recordLimit")?,
            active: get_bool(item, "active")?,
        })
    }
}

/// The plans every fresh stack has.
pub fn default_plans() -> Vec<Plan> {
    // Prices are small constants, so `from_cents` cannot fail; were it to,
    // the plan would be left out rather than written at a wrong price.
    let plan = |id: &str, name: &str, description: &str, cents: i64, domains: u32, records: u32| {
        Usd::from_cents(cents).ok().map(|price| Plan {
            id: PlanId(id.to_owned()),
            name: name.to_owned(),
            description: description.to_owned(),
            price,
            domain_limit: domains,
            record_limit: records,
            active: true,
        })
    };
    [
        plan(
            "basic",
            "Basic",
            "Managed DNS for personal sites: up to 5 domains and 100 records.",
            500,
            5,
            100,
        ),
        plan(
            "pro",
            "Pro",
            "For growing businesses: up to 25 domains and 1,000 records.",
            1500,
            25,
            1000,
        ),
        plan(
            "enterprise",
            "Enterprise",
            "For agencies and large fleets: up to 100 domains and 10,000 records.",
            5000,
            100,
            10000,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Writes the default plans that are missing; never overwrites a plan that
/// exists (an admin may have changed it). Idempotent; returns how many were created.
#[tracing::instrument(skip_all)]
pub async fn seed_default_plans(ledger: &Ledger) -> Result<usize, BillingError> {
    let mut created = 0;
    for plan in default_plans() {
        let result = ledger
            .client()
            .put_item()
            .table_name(ledger.table())
            .set_item(Some(plan.to_item()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => created += 1,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(LedgerError::dynamo("PutItem", &e).into()),
        }
    }
    Ok(created)
}

/// One plan, read consistently; `None` when unknown.
pub async fn get_plan(ledger: &Ledger, id: &PlanId) -> Result<Option<Plan>, BillingError> {
    let out = ledger
        .client()
        .get_item()
        .table_name(ledger.table())
        .key("pk", s(id.pk()))
        .key("sk", s(PLAN_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("GetItem", &e))?;
    out.item.as_ref().map(Plan::from_item).transpose()
}

/// Active plans, cheapest first: one Query of the index, one BatchGetItem.
pub async fn list_active_plans(ledger: &Ledger) -> Result<Vec<Plan>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .index_name(INDEX_NAME)
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", s(PLAN_INDEX_PK))
        .limit(MAX_PLANS as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    let keys: Vec<AttrMap> = out
        .items()
        .iter()
        .filter_map(|k| {
            Some(HashMap::from([
                ("pk".to_owned(), k.get("pk")?.clone()),
                ("sk".to_owned(), k.get("sk")?.clone()),
            ]))
        })
        .collect();
    let items = batch_get(ledger, keys, false).await?;
    let mut plans = Vec::with_capacity(items.len());
    for item in &items {
        let plan = Plan::from_item(item)?;
        if plan.active {
            plans.push(plan);
        }
    }
    plans.sort_by(|a, b| a.price.cmp(&b.price).then_with(|| a.id.cmp(&b.id)));
    Ok(plans)
}

/// Every plan, active and inactive, cheapest first (admin listing).
pub async fn list_all_plans(ledger: &Ledger) -> Result<Vec<Plan>, BillingError> {
    let out = ledger
        .client()
        .query()
        .table_name(ledger.table())
        .index_name(INDEX_NAME)
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", s(PLAN_INDEX_PK))
        .limit(MAX_PLANS as i32)
        .send()
        .await
        .map_err(|e| LedgerError::dynamo("Query", &e))?;
    let keys: Vec<AttrMap> = out
        .items()
        .iter()
        .filter_map(|k| {
            Some(HashMap::from([
                ("pk".to_owned(), k.get("pk")?.clone()),
                ("sk".to_owned(), k.get("sk")?.clone()),
            ]))
        })
        .collect();
    let mut plans = batch_get(ledger, keys, false)
        .await?
        .iter()
        .map(Plan::from_item)
        .collect::<Result<Vec<_>, _>>()?;
    plans.sort_by(|a, b| a.price.cmp(&b.price).then_with(|| a.id.cmp(&b.id)));
    Ok(plans)
}

/// Plan prices: $0.01 – $100,000.00 (two places: `Usd`).
pub fn plan_price(price: Usd) -> Result<Usd, BillingError> {
    crate::services::service_amount(price, "price")
}

fn plan_text(value: &str, field: &str, max: usize) -> Result<String, BillingError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max || trimmed.chars().any(char::is_control)
    {
        return Err(BillingError::InvalidInput(format!(
            "{field} must be 1-{max} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// A plan an admin creates (`POST /api/admin/dns/plans`).
#[derive(Clone, Debug)]
pub struct NewPlan {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: Usd,
    pub domain_limit: u32,
    pub record_limit: u32,
}

impl NewPlan {
    pub fn validate(self) -> Result<Plan, BillingError> {
        Ok(Plan {
            id: PlanId::parse(&self.id).ok_or_else(|| {
                BillingError::InvalidInput(
                    "id must be 1-64 characters of a-z, 0-9, '-' or '_'".into(),
                )
            })?,
            name: plan_text(&self.name, "name", 100)?,
            description: plan_text(&self.description, "description", 500)?,
            price: plan_price(self.price)?,
            domain_limit: self.domain_limit,
            record_limit: self.record_limit,
            active: true,
        })
    }
}

/// Creates a plan (active). 409 when the id exists (plans are never deleted).
#[tracing::instrument(skip_all, fields(plan = %plan.id))]
pub async fn create_plan(ledger: &Ledger, plan: &Plan) -> Result<(), BillingError> {
    let result = ledger
        .client()
        .put_item()
        .table_name(ledger.table())
        .set_item(Some(plan.to_item()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Err(BillingError::Conflict {
                message: format!("A plan with id {} already exists", plan.id),
                code: "plan_exists",
            })
        }
        Err(e) => Err(LedgerError::dynamo("PutItem", &e).into()),
    }
}

/// What an admin changes on a plan (`PATCH /api/admin/dns/plans/{planId}`).
#[derive(Clone, Debug, Default)]
pub struct PlanPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Usd>,
    pub domain_limit: Option<u32>,
    pub record_limit: Option<u32>,
    pub active: Option<bool>,
}

/// Changes a plan. A new price applies to new purchases now and to existing
/// subscriptions from their next renewal (the renewal job charges the
/// plan's price of the day); a deactivated plan is no longer sold, and its
/// subscriptions keep renewing. 404 unknown plan, 400 empty patch.
#[tracing::instrument(skip_all, fields(plan = id))]
pub async fn update_plan(
    ledger: &Ledger,
    id: &str,
    patch: PlanPatch,
) -> Result<Plan, BillingError> {
    let id = PlanId::parse(id).ok_or(BillingError::NotFound("Plan"))?;
    let mut sets: Vec<String> = Vec::new();
    let mut values: HashMap<String, AttributeValue> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut set = |name: &str, value: AttributeValue| {
        sets.push(format!("#{name} = :{name}"));
        names.insert(format!("#{name}"), name.to_owned());
        values.insert(format!(":{name}"), value);
    };
    if let Some(name) = &patch.name {
        set("name", s(plan_text(name, "name", 100)?));
    }
    if let Some(description) = &patch.description {
        set(
            "description",
            s(plan_text(description, "description", 500)?),
        );
    }
    if let Some(price) = patch.price {
        set("price", usd(plan_price(price)?));
    }
    if let Some(limit) = patch.domain_limit {
        set("domainLimit", n(limit));
    }
    if let Some(limit) = patch.record_limit {
        set("recordLimit", n(limit));
    }
    if let Some(active) = patch.active {
        set("active", AttributeValue::Bool(active));
    }
    if sets.is_empty() {
        return Err(BillingError::InvalidInput(
            "nothing to change: give at least one of name, description, price, domainLimit, recordLimit, isActive".into(),
        ));
    }
    let result = ledger
        .client()
        .update_item()
        .table_name(ledger.table())
        .key("pk", s(id.pk()))
        .key("sk", s(PLAN_SK))
        .update_expression(format!("SET {}", sets.join(", ")))
        .condition_expression("attribute_exists(pk)")
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send()
        .await;
    match result {
        Ok(out) => Plan::from_item(&out.attributes.unwrap_or_default()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Err(BillingError::NotFound("Plan"))
        }
        Err(e) => Err(LedgerError::dynamo("UpdateItem", &e).into()),
    }
}

/// Reads up to 100 items by key, retrying unprocessed keys a bounded number of times.
pub(crate) async fn batch_get(
    ledger: &Ledger,
    keys: Vec<AttrMap>,
    consistent: bool,
) -> Result<Vec<AttrMap>, BillingError> {
    const MAX_ROUNDS: u32 = 8;
    let mut items = Vec::with_capacity(keys.len());
    let mut pending = keys;
    for round in 0..MAX_ROUNDS {
        if pending.is_empty() {
            return Ok(items);
        }
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20u64 << round.min(5))).await;
        }
        let request = KeysAndAttributes::builder()
            .set_keys(Some(std::mem::take(&mut pending)))
            .consistent_read(consistent)
            .build()
            .map_err(|e| LedgerError::Corrupt {
                key: "BatchGetItem".into(),
                problem: e.to_string(),
            })?;
        let mut out = ledger
            .client()
            .batch_get_item()
            .request_items(ledger.table(), request)
            .send()
            .await
            .map_err(|e| LedgerError::dynamo("BatchGetItem", &e))?;
        if let Some(mut responses) = out.responses.take()
            && let Some(found) = responses.remove(ledger.table())
        {
            items.extend(found);
        }
        if let Some(mut unprocessed) = out.unprocessed_keys.take()
            && let Some(rest) = unprocessed.remove(ledger.table())
        {
            pending = rest.keys;
        }
    }
    if pending.is_empty() {
        Ok(items)
    } else {
        Err(LedgerError::Dynamo {
            operation: "BatchGetItem",
            message: format!("{} keys still unprocessed", pending.len()),
            transient: true,
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ids_are_restricted() {
        assert!(PlanId::parse("basic").is_some());
        assert!(PlanId::parse("pro-2025_a").is_some());
        for bad in ["", "Basic", "a#b", "a b", &"x".repeat(65)] {
            assert!(PlanId::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn default_plans_round_trip_through_items() {
        let plans = default_plans();
        let prices: Vec<String> = plans.iter().map(|p| p.price.to_string()).collect();
        assert_eq!(prices, ["5.00", "15.00", "50.00"]);
        for plan in plans {
            let mut item = plan.to_item();
            // DynamoDB hands numbers back normalised.
            item.insert(
                "price".into(),
                AttributeValue::N(plan.price.to_string().trim_end_matches(".00").into()),
            );
            assert_eq!(Plan::from_item(&item).unwrap(), plan);
        }
    }

    #[test]
    fn malformed_plans_are_errors_not_defaults() {
        let mut item = default_plans()[0].to_item();
        item.insert("price".into(), AttributeValue::N("5.001".into()));
        assert!(Plan::from_item(&item).is_err());
        item.insert("price".into(), AttributeValue::N("0".into()));
        assert!(Plan::from_item(&item).is_err());
        let mut item = default_plans()[0].to_item();
        item.remove("active");
        assert!(Plan::from_item(&item).is_err());
    }
}
