import { describe, expect, it } from "vitest";
import { displayNumber, toPanelBalance, toPanelDnsPlan, toPanelTransactions } from "./skypanel";

describe("SkyPANEL bridges", () => {
  it("flattens the balance", () => {
    expect(
      toPanelBalance({
        virtFusion: { balance: 1250, exact: "1250", formatted: "1,250 Tokens", available: true },
        customCredits: { balance: "12.50", formatted: "$12.50" },
      }),
    ).toEqual({ credits: 12.5, customCredits: 12.5, virtFusionTokens: 1250, virtFusionCredits: 12.5, virtFusionAvailable: true });
    expect(displayNumber("0.30")).toBe(0.3);
  });

  it("gives history numeric ids without collisions", () => {
    const rows = toPanelTransactions([
      { id: "ORDER-1", system: "virtfusion", type: "purchase", amount: 1000, status: "completed", description: "Tokens", createdAt: "2026-11-27T10:00:00Z" },
      { id: "cc-7", system: "custom_credits", type: "purchase", amount: "10.00", status: "completed", description: "Credits", createdAt: "2026-11-27T09:00:00Z", balanceBefore: "0.00", balanceAfter: "10.00" },
    ]);
    expect(rows.map((r) => [r.id, r.ref, r.amount])).toEqual([
      [-1, "ORDER-1", 10],
      [7, "cc-7", 10],
    ]);
  });

  it("adds features[] to DNS plans", () => {
    const plan = toPanelDnsPlan({ id: "basic", name: "Basic", description: "d", price: "5.00", domainLimit: 5, recordLimit: 100 });
    expect(plan.price).toBe(5);
    expect(plan.features).toContain("5 domains");
  });
});
