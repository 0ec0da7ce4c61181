// Fails when src/api/schema.d.ts is not what docs/openapi.yaml generates
// (run by infra/test.sh). Fix: `npm run gen:api` in web/, commit the result.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "billing-api-"));
const fresh = join(dir, "schema.d.ts");
try {
  execFileSync("npx", ["openapi-typescript", "../docs/openapi.yaml", "-o", fresh], { stdio: "ignore" });
  const committed = readFileSync("src/api/schema.d.ts", "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error(
      "web/src/api/schema.d.ts is out of date with docs/openapi.yaml: run `cd web && npm run gen:api` and commit it.",
    );
    try {
      execFileSync("diff", ["-u", "src/api/schema.d.ts", fresh], { stdio: "inherit" });
    } catch {
      // diff exits 1 when the files differ; its output is the point.
    }
    process.exit(1);
  }
  console.log("typed client in sync with docs/openapi.yaml");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
