//! The floor a Rust Lambda cannot go below: the runtime's own loop and one
//! static answer. `infra/coldstart.sh` runs it beside the functions, so
//! their "init → first poll" can be compared with doing nothing at init.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_event: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": "{\"hello\":true}",
        }))
    }))
    .await
}
