use integration_tests::{TestTable, new_user};
use ledger::dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

fn put(table: &str, pk: &str, sk: &str, cond: &str, v: i64) -> TransactWriteItem {
    let mut b = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.into()))
        .item("sk", AttributeValue::S(sk.into()))
        .item("v", AttributeValue::N(v.to_string()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if cond == "new" {
        b = b.condition_expression("attribute_not_exists(pk)");
    } else {
        b = b
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":v", AttributeValue::N(cond.into()));
    }
    TransactWriteItem::builder().put(b.build().unwrap()).build()
}

#[tokio::test]
async fn scratch() {
    let t = TestTable::new().await;
    let u = new_user();
    let acct = format!("A#{u}");
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", AttributeValue::S(acct.clone()))
        .item("sk", AttributeValue::S("X".into()))
        .item("v", AttributeValue::N("0".into()))
        .send()
        .await
        .unwrap();
    let tx = |cond: &str, v: i64, e: &str| {
        vec![
            put(&t.name, &acct, "X", cond, v),
            put(&t.name, &acct, e, "new", v),
        ]
    };
    let r1 = t
        .client
        .transact_write_items()
        .set_transact_items(Some(tx("0", 1, "E1")))
        .client_request_token("tok-1")
        .send()
        .await;
    println!("first: {:?}", r1.is_ok());
    let r2 = t
        .client
        .transact_write_items()
        .set_transact_items(Some(tx("0", 1, "E1")))
        .client_request_token("tok-1")
        .send()
        .await;
    println!(
        "same token resend: {:?}",
        r2.as_ref()
            .map(|_| ())
            .map_err(|e| format!("{:?}", e.as_service_error()))
    );
    let r3 = t
        .client
        .transact_write_items()
        .set_transact_items(Some(tx("1", 2, "E2")))
        .client_request_token("tok-2")
        .send()
        .await;
    println!("someone else moves: {:?}", r3.is_ok());
    let r4 = t
        .client
        .transact_write_items()
        .set_transact_items(Some(tx("0", 1, "E1")))
        .client_request_token("tok-1")
        .send()
        .await;
    println!(
        "same token after move: {:?}",
        r4.as_ref()
            .map(|_| ())
            .map_err(|e| format!("{:?}", e.as_service_error()))
    );
    let r5 = t
        .client
        .transact_write_items()
        .set_transact_items(Some(tx("0", 1, "E1")))
        .client_request_token("tok-9")
        .send()
        .await;
    println!(
        "new token stale: {:?}",
        r5.as_ref()
            .map(|_| ())
            .map_err(|e| format!("{:?}", e.as_service_error()))
    );
}
