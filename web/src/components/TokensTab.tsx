import { useServices } from "../App";
import { unwrap } from "../api/client";
import { useBalance, useRefreshMoney } from "../api/queries";
import { formatCents, formatTokens, tokensForCents } from "../money";
import { PurchaseForm } from "./PurchaseForm";

export function TokensTab() {
  const { api } = useServices();
  const refresh = useRefreshMoney();
  const balance = useBalance();
  return (
    <div className="panel">
      <h2>Buy VirtFusion tokens</h2>
      <p className="muted">100 tokens = $1.00. Tokens pay for VPS services in VirtFusion.</p>
      {balance.data && !balance.data.virtFusion.available ? (
        <p className="warn" role="status">
          VirtFusion is unavailable right now. You can still buy: your tokens are delivered as soon as it is back.
        </p>
      ) : null}
      <PurchaseForm
        kind="tokens"
        label={(cents) => `Purchase ${formatTokens(tokensForCents(cents))} for ${formatCents(cents)}`}
        hint={(cents) => `You get ${formatTokens(tokensForCents(cents))}.`}
        createOrder={(amount, key) =>
          unwrap(
            api.POST("/api/billing/virtfusion-tokens/add", {
              body: { amount },
              params: { header: { "Idempotency-Key": key } },
            }),
          )
        }
        capture={async (orderId) => {
          try {
            const result = await unwrap(api.POST("/api/billing/virtfusion-tokens/capture", { body: { orderId } }));
            if (!("tokens" in result)) {
              return "PayPal is holding the payment for review; your tokens are delivered when it completes.";
            }
            return result.status === "completed"
              ? `${formatTokens(result.tokens)} added to your VirtFusion account.`
              : `Payment received. ${formatTokens(result.tokens)} will be delivered to VirtFusion shortly (status: ${result.status}).`;
          } finally {
            await refresh();
          }
        }}
      />
    </div>
  );
}
