// Bridges for a SkyPANEL-style panel adopting this API without changing our
// contract (docs/adopting.md): its views expect flat numbers, a plain array
// of transactions with numeric ids, and DNS plans with `features[]`.
// Numbers are produced HERE, at the display edge, from the exact strings;
// nothing computed from them may be sent back as an amount.
import type { components } from "./schema";
import { toCents } from "../money";

type Schemas = components["schemas"];

/** Display number of an API money string (exact up to 2^53 cents). */
export function displayNumber(text: string): number {
  const cents = toCents(text);
  if (cents === null) throw new Error(`not an amount: ${text}`);
  return Number(cents) / 100;
}

/** SkyPANEL's balance view: `{credits, customCredits, virtFusionTokens, virtFusionCredits}`. */
export function toPanelBalance(balance: Schemas["Balance"]) {
  const tokens = balance.virtFusion.available ? balance.virtFusion.balance : 0;
  return {
    credits: displayNumber(balance.customCredits.balance),
    customCredits: displayNumber(balance.customCredits.balance),
    virtFusionTokens: tokens,
    // VirtFusion's own unit: 100 tokens = $1.00.
    virtFusionCredits: tokens / 100,
    virtFusionAvailable: balance.virtFusion.available,
  };
}

export interface PanelTransaction {
  /** Numeric, as the panel's table keys rows; `ref` is the API id (links, receipts). */
  id: number;
  ref: string;
  amount: number;
  type: string;
  description: string;
  status: string;
  paymentMethod?: string;
  createdAt: string;
}

/**
 * The panel's history: a plain array. Credit entries keep their ledger
 * sequence number as numeric id (`cc-42` → 42); token purchases (PayPal order
 * ids) get negative ids by position, so the two never collide.
 */
export function toPanelTransactions(items: Schemas["Transaction"][]): PanelTransaction[] {
  return items.map((t, index) => {
    const seq = /^cc-(\d+)$/.exec(t.id);
    const common = { ref: t.id, type: t.type, description: t.description, status: t.status, createdAt: t.createdAt };
    if (t.system === "custom_credits") {
      return {
        ...common,
        id: seq ? Number(seq[1]) : -(index + 1),
        amount: displayNumber(t.amount),
        paymentMethod: t.type === "purchase" ? "paypal" : undefined,
      };
    }
    // Token purchases: the panel shows dollars; 100 tokens = $1.00.
    return { ...common, id: -(index + 1), amount: t.amount / 100, paymentMethod: "paypal", type: "virtfusion_credit" };
  });
}

/** The panel's DNS plan card: numeric price, `maxDomains`/`maxRecords`, `features[]`. */
export function toPanelDnsPlan(plan: Schemas["DnsPlan"]) {
  return {
    id: plan.id,
    name: plan.name,
    description: plan.description,
    price: displayNumber(plan.price),
    maxDomains: plan.domainLimit,
    maxRecords: plan.recordLimit,
    features: [`${plan.domainLimit} domains`, `${plan.recordLimit} DNS records`, "Billed monthly from custom credits"],
    isActive: true,
  };
}
