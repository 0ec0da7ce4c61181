//! Measures the DynamoDB capacity each call consumes (cost per operation in
//! docs/benchmarks.md): an SDK interceptor that asks every request for
//! `ReturnConsumedCapacity = TOTAL` and adds up what the answers report.
//! Measurement only; the functions never install it.

use aws_sdk_dynamodb::operation::{
    batch_get_item::{BatchGetItemInput, BatchGetItemOutput},
    batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput},
    delete_item::{DeleteItemInput, DeleteItemOutput},
    get_item::{GetItemInput, GetItemOutput},
    put_item::{PutItemInput, PutItemOutput},
    query::{QueryInput, QueryOutput},
    transact_get_items::{TransactGetItemsInput, TransactGetItemsOutput},
    transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput},
    update_item::{UpdateItemInput, UpdateItemOutput},
};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::Input;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Capacity consumed, by operation name.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consumed {
    pub read_units: f64,
    pub write_units: f64,
    /// Calls whose answer reported no capacity (a failed condition or a
    /// cancelled transaction: DynamoDB still charges for those).
    pub unreported_calls: u64,
    /// Write units by DynamoDB's published rules, computed from the requests
    /// sent (DynamoDB Local under-reports transactions): a transactional
    /// write costs 2 units per item per KB, a standard write 1; an update,
    /// delete or condition check is counted as one KB (our items are small);
    /// a put also costs one write per index whose key the item carries.
    pub rule_write_units: f64,
}

/// An SDK interceptor; add it with `aws_sdk_dynamodb::config::Builder::interceptor`.
#[derive(Clone, Debug, Default)]
pub struct CapacityMeter {
    by_operation: Arc<Mutex<BTreeMap<&'static str, Consumed>>>,
}

impl CapacityMeter {
    pub fn snapshot(&self) -> BTreeMap<&'static str, Consumed> {
        self.by_operation
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Read and write units over all operations.
    pub fn total(&self) -> Consumed {
        self.snapshot()
            .values()
            .fold(Consumed::default(), |sum, c| Consumed {
                read_units: sum.read_units + c.read_units,
                write_units: sum.write_units + c.write_units,
                unreported_calls: sum.unreported_calls + c.unreported_calls,
                rule_write_units: sum.rule_write_units + c.rule_write_units,
            })
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.by_operation.lock() {
            m.clear();
        }
    }

    fn add(&self, operation: &'static str, reported: &[ConsumedCapacity]) {
        let Ok(mut m) = self.by_operation.lock() else {
            return;
        };
        let entry = m.entry(operation).or_default();
        if reported.is_empty() {
            entry.unreported_calls += 1;
        }
        for c in reported {
            // Units are split into read/write when DynamoDB says so; a bare
            // total belongs to the operation's kind.
            match (c.read_capacity_units(), c.write_capacity_units()) {
                (None, None) if operation_writes(operation) => {
                    entry.write_units += c.capacity_units().unwrap_or(0.0)
                }
                (None, None) => entry.read_units += c.capacity_units().unwrap_or(0.0),
                (read, write) => {
                    entry.read_units += read.unwrap_or(0.0);
                    entry.write_units += write.unwrap_or(0.0);
                }
            }
        }
    }
}

/// Write units of one item by size: 1 per started KB.
fn kb_units(item: Option<&HashMap<String, AttributeValue>>) -> f64 {
    let bytes = item.map_or(1024, |item| {
        item.iter()
            .map(|(name, value)| name.len() + value_size(value))
            .sum()
    });
    bytes.div_ceil(1024).max(1) as f64
}

/// Index writes an item causes: one standard write per global secondary
/// index whose key it carries (`gsi1pk`, `gsi2pk`, …).
fn index_units(item: Option<&HashMap<String, AttributeValue>>) -> f64 {
    item.map_or(0, |item| {
        item.keys()
            .filter(|name| name.starts_with("gsi") && name.ends_with("pk"))
            .count()
    }) as f64
}

/// Approximate stored size of a value (DynamoDB's item size rules).
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 1,
    }
}

impl CapacityMeter {
    fn add_rule_writes(&self, operation: &'static str, units: f64) {
        if let Ok(mut m) = self.by_operation.lock() {
            m.entry(operation).or_default().rule_write_units += units;
        }
    }

    fn count_rule_writes(&self, input: &Input) {
        if let Some(tx) = input.downcast_ref::<TransactWriteItemsInput>() {
            let units: f64 = tx
                .transact_items()
                .iter()
                .map(|item| {
                    let put = item.put().map(|put| put.item());
                    2.0 * kb_units(put) + index_units(put)
                })
                .sum();
            self.add_rule_writes("TransactWriteItems", units);
        } else if let Some(put) = input.downcast_ref::<PutItemInput>() {
            self.add_rule_writes("PutItem", kb_units(put.item()) + index_units(put.item()));
        } else if input.downcast_ref::<UpdateItemInput>().is_some() {
            self.add_rule_writes("UpdateItem", 1.0);
        } else if input.downcast_ref::<DeleteItemInput>().is_some() {
            self.add_rule_writes("DeleteItem", 1.0);
        } else if let Some(batch) = input.downcast_ref::<BatchWriteItemInput>() {
            let units: f64 = batch
                .request_items()
                .map(|tables| {
                    tables
                        .values()
                        .flatten()
                        .map(|w| kb_units(w.put_request().map(|p| p.item())))
                        .sum()
                })
                .unwrap_or(0.0);
            self.add_rule_writes("BatchWriteItem", units);
        }
    }
}

fn operation_writes(operation: &str) -> bool {
    matches!(
        operation,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

/// Sets `return_consumed_capacity` on whichever input this is.
macro_rules! ask_for_capacity {
    ($input:expr, $($ty:ty),+) => {
        $(if let Some(input) = $input.downcast_mut::<$ty>() {
            input.return_consumed_capacity = Some(ReturnConsumedCapacity::Total);
            return Ok(());
        })+
    };
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        self.count_rule_writes(input);
        ask_for_capacity!(
            input,
            GetItemInput,
            PutItemInput,
            UpdateItemInput,
            DeleteItemInput,
            QueryInput,
            BatchGetItemInput,
            BatchWriteItemInput,
            TransactGetItemsInput,
            TransactWriteItemsInput
        );
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Ok(output) = context.output_or_error() else {
            // Failed calls report nothing (see `Consumed::unreported_calls`).
            return Ok(());
        };
        let one = |c: Option<&ConsumedCapacity>| c.cloned().into_iter().collect::<Vec<_>>();
        let (operation, reported) = if let Some(o) = output.downcast_ref::<GetItemOutput>() {
            ("GetItem", one(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<PutItemOutput>() {
            ("PutItem", one(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
            ("UpdateItem", one(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
            ("DeleteItem", one(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
            ("Query", one(o.consumed_capacity()))
        } else if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
            ("BatchGetItem", o.consumed_capacity().to_vec())
        } else if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
            ("BatchWriteItem", o.consumed_capacity().to_vec())
        } else if let Some(o) = output.downcast_ref::<TransactGetItemsOutput>() {
            ("TransactGetItems", o.consumed_capacity().to_vec())
        } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
            ("TransactWriteItems", o.consumed_capacity().to_vec())
        } else {
            return Ok(());
        };
        self.add(operation, &reported);
        Ok(())
    }
}
