// PayPal's JavaScript SDK buttons (production). Loaded once from PayPal with
// the public client id; createOrder/onApprove call our API.
import { useEffect, useRef, useState } from "react";
import type { CheckoutProps } from "./adapter";

interface PayPalButtons {
  render(container: HTMLElement): Promise<void>;
  close?(): Promise<void>;
}
interface PayPalNamespace {
  Buttons(options: {
    style?: Record<string, string>;
    createOrder: () => Promise<string>;
    onApprove: (data: { orderID: string }) => Promise<void>;
    onError: (error: unknown) => void;
  }): PayPalButtons;
}
declare global {
  interface Window {
    paypal?: PayPalNamespace;
  }
}

let loading: Promise<PayPalNamespace> | null = null;

function loadSdk(clientId: string, currency: string): Promise<PayPalNamespace> {
  if (window.paypal) return Promise.resolve(window.paypal);
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    const query = new URLSearchParams({ "client-id": clientId, currency, intent: "capture" });
    script.src = `https://www.paypal.com/sdk/js?${query.toString()}`;
    script.onload = () => (window.paypal ? resolve(window.paypal) : reject(new Error("PayPal SDK missing")));
    script.onerror = () => {
      loading = null;
      reject(new Error("PayPal could not be loaded"));
    };
    document.head.appendChild(script);
  });
  return loading;
}

export function PayPalSdkButtons(props: CheckoutProps & { clientId: string; currency: string }) {
  const container = useRef<HTMLDivElement>(null);
  const latest = useRef(props);
  latest.current = props;
  const [failed, setFailed] = useState<string | null>(null);

  useEffect(() => {
    let buttons: PayPalButtons | null = null;
    let cancelled = false;
    loadSdk(props.clientId, props.currency)
      .then((paypal) => {
        if (cancelled || !container.current) return;
        buttons = paypal.Buttons({
          style: { layout: "horizontal", label: "pay" },
          createOrder: async () => (await latest.current.createOrder()).orderId,
          onApprove: async ({ orderID }) => latest.current.capture(orderID),
          onError: (e) => latest.current.onError(e),
        });
        return buttons.render(container.current);
      })
      .catch((e: unknown) => setFailed(e instanceof Error ? e.message : "PayPal could not be loaded"));
    return () => {
      cancelled = true;
      void buttons?.close?.();
    };
  }, [props.clientId, props.currency]);

  return (
    <div className="checkout" data-testid={props.testId}>
      <p className="muted">{props.label}</p>
      {failed ? <p className="error">{failed}</p> : null}
      <div ref={container} style={props.disabled ? { pointerEvents: "none", opacity: 0.5 } : undefined} />
    </div>
  );
}
