// Runtime configuration: /config.json next to the page (written by the
// deployment or by infra/run.sh), else the build-time VITE_* defaults.

export type PayPalConfig =
  /** Production: PayPal's JavaScript SDK buttons. */
  | { mode: "sdk"; clientId: string; currency?: string }
  /** Local: the PayPal stand-in's approveUrl page, in a popup. */
  | { mode: "standin" };

export interface AppConfig {
  /** The API's origin, e.g. https://api.example.com or http://127.0.0.1:3000 */
  apiBaseUrl: string;
  paypal: PayPalConfig;
}

export async function loadConfig(): Promise<AppConfig> {
  const fallback: AppConfig = {
    apiBaseUrl: import.meta.env.VITE_API_BASE_URL ?? "http://127.0.0.1:3000",
    paypal: import.meta.env.VITE_PAYPAL_CLIENT_ID
      ? { mode: "sdk", clientId: import.meta.env.VITE_PAYPAL_CLIENT_ID }
      : { mode: "standin" },
  };
  try {
    const response = await fetch("/config.json", { cache: "no-store" });
    if (!response.ok) return fallback;
    const json = (await response.json()) as Partial<AppConfig>;
    return {
      apiBaseUrl: (json.apiBaseUrl ?? fallback.apiBaseUrl).replace(/\/$/, ""),
      paypal: json.paypal ?? fallback.paypal,
    };
  } catch {
    return fallback;
  }
}
