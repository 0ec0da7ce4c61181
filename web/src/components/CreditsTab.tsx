import { useServices } from "../App";
import { unwrap } from "../api/client";
import { useRefreshMoney } from "../api/queries";
import { formatCents, formatUsd } from "../money";
import { DnsPlans } from "./DnsPlans";
import { PurchaseForm } from "./PurchaseForm";
import { ServiceSubscriptions } from "./ServiceSubscriptions";

export function CreditsTab() {
  const { api } = useServices();
  const refresh = useRefreshMoney();
  return (
    <div className="grid">
      <div className="panel">
        <h2>Add custom credits</h2>
        <PurchaseForm
          kind="credits"
          label={(cents) => `Purchase ${formatCents(cents)} in Credits`}
          createOrder={(amount, key) =>
            unwrap(
              api.POST("/api/billing/custom-credits/add", {
                body: { amount },
                params: { header: { "Idempotency-Key": key } },
              }),
            )
          }
          capture={async (orderId) => {
            try {
              const result = await unwrap(api.POST("/api/billing/custom-credits/capture", { body: { orderId } }));
              return "balance" in result
                ? `${formatUsd(result.amount)} added to your credits. Balance: ${formatUsd(result.balance)}.`
                : `PayPal is holding the payment of ${formatUsd(result.amount)} for review; your credits arrive when it completes.`;
            } finally {
              await refresh();
            }
          }}
        />
        <UsageNote />
      </div>
      <div className="panel">
        <DnsPlans />
        <ServiceSubscriptions />
      </div>
    </div>
  );
}

function UsageNote() {
  return (
    <div className="note" data-testid="usage-note">
      <strong>What custom credits pay for</strong>
      <ul>
        <li>DNS plans: Basic $5.00, Pro $15.00, Enterprise $50.00 per month</li>
        <li>Dedicated servers</li>
        <li>Other services and add-ons of the panel</li>
      </ul>
      <p className="muted">VirtFusion tokens (for VPS services) are bought separately on the VirtFusion Tokens tab.</p>
    </div>
  );
}
