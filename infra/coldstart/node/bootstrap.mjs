// The baseline of infra/coldstart.sh: what most teams would write for
// GET /api/billing/balance on Node.js 20 — an AWS SDK v3 DynamoDB client built
// at init, one consistent GetItem of the caller's account per event, an API
// Gateway v2 response. No JWT check, no VirtFusion call: less work than the
// Rust balance function, on purpose (the floor of the Node stack).
//
// The loop is the Runtime API contract that Lambda's own Node.js runtime
// implements: GET .../invocation/next, then POST .../<id>/response.
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";

const api = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime`;
const table = process.env.BILLING_TABLE ?? "billing";
const client = new DynamoDBClient({
  // DynamoDB Local; in AWS this would be left to the SDK's defaults.
  endpoint: process.env.DYNAMODB_ENDPOINT,
});

async function handler(event) {
  const out = await client.send(
    new GetItemCommand({
      TableName: table,
      Key: { pk: { S: "USER#1001" }, sk: { S: "CREDITS" } },
      ConsistentRead: true,
    }),
  );
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ balance: out.Item?.balance?.N ?? "0.00", path: event.rawPath }),
  };
}

for (;;) {
  const next = await fetch(`${api}/invocation/next`);
  if (!next.ok) break;
  const id = next.headers.get("lambda-runtime-aws-request-id");
  const event = await next.json();
  let path = "response";
  let payload;
  try {
    payload = await handler(event);
  } catch (err) {
    path = "error";
    payload = { errorType: err?.name ?? "Error", errorMessage: String(err?.message ?? err) };
  }
  await fetch(`${api}/invocation/${id}/${path}`, { method: "POST", body: JSON.stringify(payload) });
}
