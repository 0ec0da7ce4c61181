// Browser tests of the billing page and the admin console against the local
// stack (infra/e2e.sh): playwright-core driving Debian's chromium (no browser
// download). Each test uses fresh user ids, so the stack's other data (e.g.
// schemathesis') does not matter. Env: API, WEB_URL, BILLING_JWT_SECRET,
// CHROMIUM_PATH, E2E_OUT (screenshots), E2E_ONLY (a test name filter).
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const API = required("API");
const WEB = required("WEB_URL").replace(/\/$/, "");
const SECRET = process.env.BILLING_JWT_SECRET ?? "local-dev-secret";
const OUT = process.env.E2E_OUT ?? join(process.cwd(), "e2e", "out");
mkdirSync(OUT, { recursive: true });
const RUN = `${Date.now() % 1_000_000_000}`;

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run infra/e2e.sh)`);
  return value;
}

function b64url(data) {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 token like the panel's server signs (docs/adopting.md). */
function token(sub, roles = []) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64url(JSON.stringify({ sub, roles, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const signature = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

const ADMIN = token("1", ["admin"]);
let nextUser = 0;
/** A fresh numeric user id (SkyPANEL-style) and its token. */
function freshUser() {
  nextUser += 1;
  const sub = `9${RUN}${nextUser}`;
  return { sub, token: token(sub) };
}

/** Direct API calls (Node, no CORS): to check what the page did. */
async function api(tokenValue, method, path, body) {
  const response = await fetch(API + path, {
    method,
    headers: { authorization: `Bearer ${tokenValue}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

function equal(actual, expected, message) {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

// Playwright gives every launch a new empty profile (its own --user-data-dir).
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

async function openPage(path, tokenValue) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${WEB}${path}#token=${tokenValue}`);
  return { context, page, errors };
}

const tests = [];
function test(name, body) {
  tests.push({ name, body });
}

test("credits purchase through the stand-in's approval page pays once after a double click", async () => {
  const user = freshUser();
  const { context, page } = await openPage("/", user.token);
  const credits = page.getByTestId("credits-balance");
  await credits.getByText("$0.00").waitFor();
  await page.getByText("For VPS services only").waitFor();
  await page.getByText("For DNS plans and other services").waitFor();
  await page.getByRole("button", { name: "$25", exact: true }).click();
  const purchase = page.getByTestId("credits-purchase");
  equal(await purchase.textContent(), "Purchase $25.00 in Credits", "button label");
  // Client-side validation mirrors the server's.
  await page.getByTestId("credits-amount").fill("1000.01");
  await page.getByTestId("credits-amount-error").waitFor();
  assert(await purchase.isDisabled(), "an out-of-range amount cannot be bought");
  await page.getByTestId("credits-amount").fill("25");

  // The network loses the answer to the first /add (the server did create
  // the order); the user clicks again, then double-clicks. Every attempt of
  // this intent must carry the same Idempotency-Key and get the same order.
  const attempts = [];
  await page.route("**/api/billing/custom-credits/add", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    const response = await route.fetch();
    const body = await response.json();
    attempts.push({ key: route.request().headers()["idempotency-key"], orderId: body.orderId });
    if (attempts.length === 1) return route.abort("connectionreset");
    return route.fulfill({ response });
  });
  await purchase.click();
  await page.getByTestId("credits-error").getByText("cannot be reached").waitFor();

  let popups = 0;
  context.on("page", () => (popups += 1));
  const popupPromise = page.waitForEvent("popup");
  // Two clicks in one task: before React can re-render a disabled button.
  await purchase.evaluate((button) => {
    button.click();
    button.click();
  });
  const popup = await popupPromise;
  await popup.waitForLoadState();
  assert((await popup.content()).includes("Payment approved"), "the stand-in approved the order");
  await popup.close();
  await page.getByTestId("toast-success").filter({ hasText: "$25.00 added" }).waitFor();
  await credits.getByText("$25.00").waitFor();
  equal(attempts.length, 2, "one /add for the retry, none for the second click of the double click");
  assert(attempts[0].key && attempts[0].key === attempts[1].key, "the retry reuses the intent's Idempotency-Key");
  equal(attempts[1].orderId, attempts[0].orderId, "the API replayed the first order");
  equal(popups, 1, "one approval window (one order) for the double click");

  // The API agrees: credited once, one purchase in the history.
  const balance = await api(user.token, "GET", "/api/billing/balance");
  equal(balance.body.customCredits.balance, "25.00", "balance after one purchase");
  const history = await api(user.token, "GET", "/api/billing/transactions");
  const purchases = history.body.items.filter((t) => t.system === "custom_credits" && t.type === "purchase");
  equal(purchases.length, 1, "purchase entries");
  // "Complete purchase" again (a retry) does not pay twice either.
  await page.getByTestId("credits-purchase").waitFor();
  await context.close();
});

test("DNS plan: 402 on a short balance, bought after an admin adds credits with a reason", async () => {
  // The stack may have been fuzzed first (schemathesis edits plans through
  // the admin routes): put the seeded plans back before buying them.
  for (const [id, name, price, domainLimit, recordLimit] of [
    ["basic", "Basic", "5.00", 5, 100],
    ["pro", "Pro", "15.00", 25, 1000],
  ]) {
    const restored = await api(ADMIN, "PATCH", `/api/admin/dns/plans/${id}`, {
      name,
      price,
      domainLimit,
      recordLimit,
      isActive: true,
    });
    equal(restored.status, 200, `${name} restored through the admin route`);
  }
  const user = freshUser();
  const { context, page } = await openPage("/", user.token);
  await page.getByTestId("buy-pro").click();
  await page.getByTestId("dns-error").getByText("Insufficient balance").waitFor();
  const after402 = await api(user.token, "GET", "/api/dns/subscription");
  equal(after402.body.subscription, null, "no subscription after 402");

  // The admin console: find the user, add credits with a reason.
  const admin = await openPage("/admin", ADMIN);
  await admin.page.getByTestId("admin-user").fill(user.sub);
  await admin.page.getByTestId("admin-find").click();
  await admin.page.getByTestId("admin-balance").filter({ hasText: "$0.00" }).waitFor();
  await admin.page.getByTestId("admin-amount").fill("20");
  assert(await admin.page.getByTestId("admin-add").isDisabled(), "a reason is required");
  await admin.page.getByTestId("admin-reason").fill("e2e goodwill");
  await admin.page.getByTestId("admin-add").dblclick();
  await admin.page.getByTestId("admin-balance").filter({ hasText: "$20.00" }).waitFor();
  await admin.page.getByText("Credits added by admin: e2e goodwill").first().waitFor();
  // The reconciliation report (GET /api/admin/reconciliation) rendered.
  await admin.page.getByTestId("reconciliation").waitFor();
  await admin.page.screenshot({ path: join(OUT, "admin-console.png"), fullPage: true });
  await admin.context.close();
  const credited = await api(user.token, "GET", "/api/billing/balance");
  equal(credited.body.customCredits.balance, "20.00", "a double click on Add credits adds once");

  // The user's history shows it, with the reason.
  await page.reload();
  await page.getByTestId("credits-balance").getByText("$20.00").waitFor();
  await page.getByRole("tab", { name: "Transactions" }).click();
  await page.getByText("Credits added by admin: e2e goodwill").first().waitFor();

  // Now the purchase goes through.
  await page.getByRole("tab", { name: "Custom Credits" }).click();
  await page.getByTestId("buy-basic").dblclick();
  await page.getByTestId("dns-subscription").getByText("Basic").waitFor();
  await page.getByTestId("credits-balance").getByText("$15.00").waitFor();
  const bought = await api(user.token, "GET", "/api/billing/balance");
  equal(bought.body.customCredits.balance, "15.00", "one DNS purchase for the double click");
  await page.getByTestId("dns-cancel").click();
  await page.getByTestId("dns-subscription").getByText("auto-renew off").waitFor();
  await page.screenshot({ path: join(OUT, "billing-page.png"), fullPage: true });
  await context.close();
});

test("VirtFusion tokens purchase through the stand-in's approval page", async () => {
  const user = freshUser();
  const { context, page } = await openPage("/", user.token);
  await page.getByRole("tab", { name: "VirtFusion Tokens" }).click();
  await page.getByRole("button", { name: "$5", exact: true }).click();
  const purchase = page.getByTestId("tokens-purchase");
  equal(await purchase.textContent(), "Purchase 500 Tokens for $5.00", "button label");
  const popupPromise = page.waitForEvent("popup");
  await purchase.click();
  const popup = await popupPromise;
  await popup.waitForLoadState();
  await popup.close();
  await page.getByTestId("toast-success").filter({ hasText: "500 Tokens" }).waitFor();
  const history = await api(user.token, "GET", "/api/billing/transactions");
  const tokens = history.body.items.filter((t) => t.system === "virtfusion");
  equal(tokens.map((t) => t.amount), [500], "one token purchase of 500");
  await context.close();
});

test("transactions load more on the cursor", async () => {
  const user = freshUser();
  for (let i = 1; i <= 12; i += 1) {
    const r = await api(ADMIN, "POST", `/api/admin/users/${user.sub}/custom-credits`, {
      amount: "1.00",
      reason: `grant ${i}`,
    });
    equal(r.status, 200, "admin add");
  }
  const { context, page } = await openPage("/", user.token);
  await page.getByRole("tab", { name: "Transactions" }).click();
  await page.getByText("Credits added by admin: grant 12", { exact: true }).first().waitFor();
  equal(await page.getByTestId("transaction-row").count(), 10, "first page");
  await page.getByTestId("load-more").click();
  await page.getByText("Credits added by admin: grant 1", { exact: true }).first().waitFor();
  equal(await page.getByTestId("transaction-row").count(), 12, "both pages");
  assert((await page.getByTestId("load-more").count()) === 0, "no more pages");
  await context.close();
});

test("CORS: the page's origin gets through (preflight, exposed x-request-id); another origin does not", async () => {
  const user = freshUser();
  const { context, page } = await openPage("/", user.token);
  await page.getByTestId("credits-balance").getByText("$0.00").waitFor();
  const allowed = await page.evaluate(
    async ({ api, token }) => {
      const r = await fetch(`${api}/api/billing/custom-credits/add`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "idempotency-key": "cors-1" },
        body: JSON.stringify({ amount: "1000.01" }),
      });
      return { status: r.status, requestId: r.headers.get("x-request-id") };
    },
    { api: API, token: user.token },
  );
  equal(allowed.status, 400, "the API's own answer reaches the page");
  assert(allowed.requestId, "x-request-id is exposed to the page");
  await context.close();

  // Another origin (same server, other host name): the browser blocks it.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await otherPage.goto(WEB.replace("127.0.0.1", "localhost") + "/");
  const blocked = await otherPage.evaluate(
    async ({ api, token }) => {
      try {
        await fetch(`${api}/api/billing/balance`, { headers: { authorization: `Bearer ${token}` } });
        return "allowed";
      } catch {
        return "blocked";
      }
    },
    { api: API, token: user.token },
  );
  equal(blocked, "blocked", "a page on an origin the template does not allow");
  await other.close();
});

const only = process.env.E2E_ONLY;
let failed = 0;
let ran = 0;
const started = Date.now();
for (const t of tests) {
  if (only && !t.name.includes(only)) continue;
  ran += 1;
  const t0 = Date.now();
  try {
    await t.body();
    console.log(`ok   ${t.name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${t.name} (${Date.now() - t0} ms)\n     ${e instanceof Error ? e.stack ?? e.message : e}`);
  }
}
await browser.close();
console.log(`${ran - failed} passed, ${failed} failed in ${Date.now() - started} ms; screenshots in ${OUT}`);
process.exit(failed ? 1 : 0);
