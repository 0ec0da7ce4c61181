// PayPal approval, one adapter chosen by configuration:
// - "sdk" (production): PayPal's JavaScript SDK buttons; createOrder → our
//   /add, onApprove → our /capture;
// - "standin" (local): the stand-in's approveUrl page in a popup (a redirect
//   where popups are blocked); the capture runs when the popup closes, or on
//   "Complete purchase".
// Either way the amount is the server's: /add creates the order, /capture
// credits what PayPal captured; the page never sends what to credit.
import { useEffect, useRef, useState } from "react";
import type { PayPalConfig } from "../config";
import { PayPalSdkButtons } from "./sdk";

export interface CreatedOrder {
  orderId: string;
  approveUrl: string;
}

export interface CheckoutProps {
  paypal: PayPalConfig;
  /** Our button's text ("Purchase $10.00 in Credits"); the SDK draws its own. */
  label: string;
  disabled: boolean;
  /** POST .../add with this intent's Idempotency-Key. */
  createOrder: () => Promise<CreatedOrder>;
  /** POST .../capture; throws ApiError (409 "Payment not completed", ...). */
  capture: (orderId: string) => Promise<void>;
  onError: (error: unknown) => void;
  testId: string;
}

export function PayPalCheckout(props: CheckoutProps) {
  if (props.paypal.mode === "sdk") {
    return <PayPalSdkButtons clientId={props.paypal.clientId} currency={props.paypal.currency ?? "USD"} {...props} />;
  }
  return <StandinCheckout {...props} />;
}

type Stage =
  | { kind: "idle" }
  | { kind: "creating" }
  | { kind: "approving"; order: CreatedOrder; blocked: boolean }
  | { kind: "capturing"; order: CreatedOrder };

function StandinCheckout({ label, disabled, createOrder, capture, onError, testId }: CheckoutProps) {
  const [stage, setStage] = useState<Stage>({ kind: "idle" });
  // Synchronous guard: a double click fires twice before React re-renders.
  const busy = useRef(false);
  const popup = useRef<Window | null>(null);

  const finish = async (order: CreatedOrder) => {
    setStage({ kind: "capturing", order });
    try {
      await capture(order.orderId);
      setStage({ kind: "idle" });
      busy.current = false;
    } catch (e) {
      onError(e);
      // Not approved yet (409) or a transient failure: the same order can be
      // captured again (captures are idempotent by order id).
      setStage({ kind: "approving", order, blocked: popup.current === null });
    }
  };

  const start = async () => {
    if (busy.current || disabled) return;
    busy.current = true;
    setStage({ kind: "creating" });
    try {
      const order = await createOrder();
      const win = window.open(order.approveUrl, "paypal-approval", "popup,width=480,height=640");
      popup.current = win;
      setStage({ kind: "approving", order, blocked: win === null });
    } catch (e) {
      busy.current = false;
      setStage({ kind: "idle" });
      onError(e);
    }
  };

  // Capture when the approval popup closes.
  useEffect(() => {
    if (stage.kind !== "approving" || stage.blocked) return;
    const order = stage.order;
    const timer = window.setInterval(() => {
      if (popup.current?.closed) {
        window.clearInterval(timer);
        popup.current = null;
        void finish(order);
      }
    }, 300);
    return () => window.clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stage]);

  const cancel = () => {
    popup.current?.close();
    popup.current = null;
    busy.current = false;
    setStage({ kind: "idle" });
  };

  const working = stage.kind === "creating" || stage.kind === "capturing";
  return (
    <div className="checkout">
      <button
        type="button"
        className="primary"
        data-testid={testId}
        disabled={disabled || stage.kind !== "idle"}
        onClick={() => void start()}
      >
        {working ? <span className="spinner" aria-hidden /> : null}
        {stage.kind === "creating" ? "Processing…" : stage.kind === "capturing" ? "Completing payment…" : label}
      </button>
      {stage.kind === "approving" ? (
        <div className="approval" role="status">
          <p>
            Approve the payment in the PayPal window
            {stage.blocked ? (
              <>
                {" "}
                (<a href={stage.order.approveUrl} target="_blank" rel="noreferrer">open PayPal</a>)
              </>
            ) : null}
            , then come back here.
          </p>
          <button type="button" data-testid={`${testId}-complete`} onClick={() => void finish(stage.order)}>
            Complete purchase
          </button>{" "}
          <button type="button" className="link" onClick={cancel}>
            Cancel
          </button>
        </div>
      ) : null}
    </div>
  );
}
