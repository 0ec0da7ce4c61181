//! Attribute-map helpers for every billing item: a missing or malformed
//! attribute is a typed `Corrupt` error naming the item, never a default.
//! Money is written from its exact decimal text and read back through the
//! strict money parser (never through a float).

use crate::BillingError;
use aws_sdk_dynamodb::types::AttributeValue;
use billing_money::Usd;
use ledger::{AttrMap, LedgerError};
use time::OffsetDateTime;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Money as a DynamoDB number written from its exact decimal text.
pub(crate) fn usd(value: Usd) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn time(at: OffsetDateTime) -> AttributeValue {
    AttributeValue::S(crate::subscriptions::dates::format_time(at))
}

pub(crate) fn corrupt(item: &AttrMap, problem: impl Into<String>) -> BillingError {
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "?",
    };
    BillingError::Ledger(LedgerError::Corrupt {
        key: format!("{}/{}", part("pk"), part("sk")),
        problem: problem.into(),
    })
}

pub(crate) fn get_s<'a>(item: &'a AttrMap, name: &str) -> Result<&'a str, BillingError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(item, format!("{name} missing or not a string"))),
    }
}

pub(crate) fn get_bool(item: &AttrMap, name: &str) -> Result<bool, BillingError> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(corrupt(item, format!("{name} missing or not a boolean"))),
    }
}

pub(crate) fn get_u32(item: &AttrMap, name: &str) -> Result<u32, BillingError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| corrupt(item, format!("{name} is not a whole number"))),
        _ => Err(corrupt(item, format!("{name} missing or not a number"))),
    }
}

/// DynamoDB returns numbers normalised (`5`, `12.5`): exact literals for the money parser.
pub(crate) fn get_usd(item: &AttrMap, name: &str) -> Result<Usd, BillingError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => billing_money::parse_usd_literal(v)
            .map_err(|_| corrupt(item, format!("{name} is not an exact amount"))),
        _ => Err(corrupt(item, format!("{name} missing or not a number"))),
    }
}

pub(crate) fn get_time(item: &AttrMap, name: &str) -> Result<OffsetDateTime, BillingError> {
    crate::subscriptions::dates::parse_time(get_s(item, name)?)
        .ok_or_else(|| corrupt(item, format!("{name} is not an RFC 3339 time")))
}

pub(crate) fn opt_time(item: &AttrMap, name: &str) -> Result<Option<OffsetDateTime>, BillingError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(_) => get_time(item, name).map(Some),
    }
}

/// Reads the fields of one item whose attributes may be absent: absent is
/// `None`, a required field absent or malformed is [`ItemReader::bad`], a
/// `Corrupt` error naming the item's `pk` (or `unknown_key` without one).
pub(crate) struct ItemReader<'a> {
    item: &'a AttrMap,
    key: String,
}

impl<'a> ItemReader<'a> {
    pub(crate) fn new(item: &'a AttrMap, unknown_key: &str) -> ItemReader<'a> {
        let key = match item.get("pk") {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => unknown_key.to_owned(),
        };
        ItemReader { item, key }
    }

    /// The item's `pk`.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// `<field> missing or malformed`, naming the item.
    pub(crate) fn bad(&self, field: &str) -> BillingError {
        BillingError::Ledger(LedgerError::corrupt(
            &self.key,
            format!("{field} missing or malformed"),
        ))
    }

    /// A string attribute, if present.
    pub(crate) fn text(&self, name: &str) -> Option<&'a str> {
        match self.item.get(name) {
            Some(AttributeValue::S(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    /// A number attribute's text, if present.
    pub(crate) fn num(&self, name: &str) -> Option<&'a str> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => Some(v.as_str()),
            _ => None,
        }
    }

    /// A string attribute that must be there.
    pub(crate) fn required(&self, name: &str) -> Result<&'a str, BillingError> {
        self.text(name).ok_or_else(|| self.bad(name))
    }

    /// A number attribute parsed as `T`, if present; malformed is an error.
    pub(crate) fn parsed<T: std::str::FromStr>(
        &self,
        name: &str,
    ) -> Result<Option<T>, BillingError> {
        self.num(name)
            .map(|v| v.parse().map_err(|_| self.bad(name)))
            .transpose()
    }

    /// An exact amount, if present; malformed is an error.
    pub(crate) fn usd(&self, name: &str) -> Result<Option<Usd>, BillingError> {
        self.num(name)
            .map(|v| billing_money::parse_usd_literal(v).map_err(|_| self.bad(name)))
            .transpose()
    }
}
