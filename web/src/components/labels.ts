// History labels for the API's transaction types (API.md's vocabulary, with
// the older names this API has used), anything else humanized.
const LABELS: Record<string, string> = {
  purchase: "Purchase (PayPal)",
  admin_add: "Added by support",
  admin_credit: "Added by support",
  admin_remove: "Removed by support",
  admin_debit: "Removed by support",
  dns_purchase: "DNS plan",
  dns_renewal: "DNS plan renewal",
  refund: "Refund",
  refund_reverted: "Refund reverted",
  reversal: "Payment reversed",
  reversal_cancelled: "Reversal cancelled",
};

export function typeLabel(type: string): string {
  if (LABELS[type]) return LABELS[type];
  const service = /^service_(purchase|renewal|refund)_(.+)$/.exec(type);
  if (service) {
    const what = service[2] === "dns_plan" ? "DNS plan" : service[2]!.replace(/_/g, " ");
    const verb = { purchase: "", renewal: " renewal", refund: " refund" }[service[1] as "purchase" | "renewal" | "refund"];
    return `${what.charAt(0).toUpperCase()}${what.slice(1)}${verb}`;
  }
  return type.replace(/_/g, " ");
}
