// The purchase form shared by credits and tokens: amount $1-$1000, presets,
// client-side checks mirroring the server's, one Idempotency-Key per intent,
// PayPal approval through the configured adapter.
import { useState, type ReactNode } from "react";
import { useServices } from "../App";
import { describeError } from "../api/client";
import { useIntentKey } from "../api/queries";
import { checkAmount, formatCents, PURCHASE_MAX_CENTS, PURCHASE_MIN_CENTS } from "../money";
import { PayPalCheckout, type CreatedOrder } from "../paypal/adapter";
import { useToast } from "./Toasts";

export const PRESETS = ["5", "10", "25", "50"];

export function PurchaseForm(props: {
  kind: "credits" | "tokens";
  label: (cents: bigint) => string;
  hint?: (cents: bigint) => ReactNode;
  createOrder: (amount: string, idempotencyKey: string) => Promise<CreatedOrder>;
  capture: (orderId: string) => Promise<string>;
}) {
  const { config } = useServices();
  const toast = useToast();
  const [amount, setAmount] = useState("10");
  const [error, setError] = useState<string | null>(null);
  const intent = useIntentKey();
  const check = checkAmount(amount, PURCHASE_MIN_CENTS, PURCHASE_MAX_CENTS);

  return (
    <form className="purchase" onSubmit={(e) => e.preventDefault()} data-testid={`${props.kind}-form`}>
      <label>
        Amount (USD, {formatCents(PURCHASE_MIN_CENTS)} – {formatCents(PURCHASE_MAX_CENTS)})
        <input
          inputMode="decimal"
          value={amount}
          aria-invalid={!check.ok}
          data-testid={`${props.kind}-amount`}
          onChange={(e) => {
            setAmount(e.target.value);
            setError(null);
          }}
        />
      </label>
      <div className="presets">
        {PRESETS.map((p) => (
          <button key={p} type="button" className={amount === p ? "preset active" : "preset"} onClick={() => setAmount(p)}>
            ${p}
          </button>
        ))}
      </div>
      {!check.ok ? <p className="error" data-testid={`${props.kind}-amount-error`}>{check.error}</p> : null}
      {check.ok && props.hint ? <p className="muted">{props.hint(check.cents)}</p> : null}
      <PayPalCheckout
        paypal={config.paypal}
        testId={`${props.kind}-purchase`}
        label={check.ok ? props.label(check.cents) : props.label(0n)}
        disabled={!check.ok}
        createOrder={() => {
          if (!check.ok) return Promise.reject(new Error(check.error));
          setError(null);
          // Same amount, same intent: a retry reuses the key (the API replays the first order).
          return props.createOrder(check.wire, intent.keyFor(`${props.kind}:${check.wire}`));
        }}
        capture={async (orderId) => {
          const message = await props.capture(orderId);
          intent.done();
          toast("success", message);
        }}
        onError={(e) => {
          const text = describeError(e);
          setError(text);
          toast("error", text);
        }}
      />
      {error ? <p className="error" role="alert" data-testid={`${props.kind}-error`}>{error}</p> : null}
    </form>
  );
}
