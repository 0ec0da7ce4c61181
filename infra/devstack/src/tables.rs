//! Creates tables in DynamoDB Local from their `template.yaml` definition.

use crate::template::TableDef;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

#[derive(Debug, thiserror::Error)]
#[error("create table {table}: {message}")]
pub struct TableError {
    pub table: String,
    pub message: String,
}

/// Creates `name` with the keys and indexes of `def`; an existing table is left alone.
pub async fn create_table(client: &Client, def: &TableDef, name: &str) -> Result<bool, TableError> {
    let err = |message: String| TableError {
        table: name.to_owned(),
        message,
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in &def.attributes {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    for key in key_elements(&def.keys).map_err(err)? {
        request = request.key_schema(key);
    }
    for index in &def.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_elements(&index.keys).map_err(err)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection.as_str()))
                        .build(),
                )
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    if let Some(view) = &def.stream_view {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&e))
                .contains("ResourceInUseException") =>
        {
            // A table from before the outbox (a kept local stack): give it its stream.
            if let Some(view) = &def.stream_view {
                enable_stream(client, name, view).await.map_err(err)?;
            }
            // ... and the indexes added to the template since it was created.
            add_missing_indexes(client, def, name).await.map_err(err)?;
            return Ok(false);
        }
        Err(e) => {
            return Err(err(
                aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()
            ));
        }
    }
    if let Some(ttl) = &def.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl)
                    .enabled(true)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| err(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
    }
    Ok(true)
}

fn key_elements(keys: &[crate::template::KeyDef]) -> Result<Vec<KeySchemaElement>, String> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Creates on an existing table the indexes of `def` it lacks (a kept local
/// stack from before an index was added; items written before keep no keys
/// in it unless rewritten).
pub async fn add_missing_indexes(
    client: &Client,
    def: &TableDef,
    name: &str,
) -> Result<(), String> {
    let out = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
    let existing: Vec<String> = out
        .table()
        .map(|t| {
            t.global_secondary_indexes()
                .iter()
                .filter_map(|i| i.index_name().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for index in def.indexes.iter().filter(|i| !existing.contains(&i.name)) {
        let mut update = client.update_table().table_name(name);
        for key in &index.keys {
            let kind = def
                .attributes
                .iter()
                .find(|(attribute, _)| attribute == &key.attribute)
                .map(|(_, kind)| kind.as_str())
                .unwrap_or("S");
            update = update.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&key.attribute)
                    .attribute_type(ScalarAttributeType::from(kind))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(&index.name)
            .set_key_schema(Some(key_elements(&index.keys)?))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::from(index.projection.as_str()))
                    .build(),
            )
            .build()
            .map_err(|e| e.to_string())?;
        update
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
    }
    Ok(())
}

/// Turns the stream on for an existing table that has none.
pub async fn enable_stream(client: &Client, name: &str, view: &str) -> Result<(), String> {
    let out = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
    let enabled = out
        .table()
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if enabled {
        return Ok(());
    }
    client
        .update_table()
        .table_name(name)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())?;
    Ok(())
}
