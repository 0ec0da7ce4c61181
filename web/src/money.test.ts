import { describe, expect, it } from "vitest";
import {
  centsToDecimal,
  checkAmount,
  checkGrantTokens,
  formatSignedUsd,
  formatTokens,
  formatUsd,
  PURCHASE_MAX_CENTS,
  PURCHASE_MIN_CENTS,
  toCents,
} from "./money";

describe("money", () => {
  it("parses and prints exact decimals", () => {
    expect(toCents("12.50")).toBe(1250n);
    expect(toCents("-5.00")).toBe(-500n);
    expect(toCents("0.1")).toBe(10n);
    expect(toCents("1e3")).toBeNull();
    // Far beyond a double's exact integers: still exact.
    expect(centsToDecimal(toCents("90071992547409931.07")!)).toBe("90071992547409931.07");
    expect(centsToDecimal(-7n)).toBe("-0.07");
  });

  it("formats for display", () => {
    expect(formatUsd("1250.00")).toBe("$1,250.00");
    expect(formatUsd("-5.00")).toBe("-$5.00");
    expect(formatSignedUsd("5.00")).toBe("+$5.00");
    expect(formatUsd("0.30")).toBe("$0.30");
    expect(formatTokens(1250)).toBe("1,250 Tokens");
    expect(formatTokens(-100)).toBe("-100 Tokens");
  });

  it("validates amounts like the server", () => {
    const check = (s: string) => checkAmount(s, PURCHASE_MIN_CENTS, PURCHASE_MAX_CENTS);
    expect(check("10")).toEqual({ ok: true, cents: 1000n, wire: "10.00" });
    expect(check("10.5")).toEqual({ ok: true, cents: 1050n, wire: "10.50" });
    expect(check("1000.00").ok).toBe(true);
    expect(check("1").ok).toBe(true);
    for (const bad of ["", "0.99", "1000.01", "1e2", "10.555", "+5", "05", "-1", "NaN", "Infinity", "1,000"]) {
      expect(check(bad).ok, bad).toBe(false);
    }
    // 0.1 + 0.2 style float traps do not exist here.
    expect(check("0.30").ok).toBe(false);
  });
});

describe("checkGrantTokens", () => {
  it("accepts whole numbers from 1 to 10,000,000 only", () => {
    expect(checkGrantTokens("1")).toBe(1);
    expect(checkGrantTokens(" 500 ")).toBe(500);
    expect(checkGrantTokens("10000000")).toBe(10_000_000);
    for (const bad of ["", "0", "-5", "1.5", "10000001", "99999999", "1e3", "05", "abc"]) {
      expect(checkGrantTokens(bad)).toBeNull();
    }
  });
});
