import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createContext, useContext, useEffect, useMemo, useState } from "react";
import { createBillingClient, type BillingClient } from "./api/client";
import { getToken, setToken, takeTokenFromUrl, tokenSubject } from "./auth";
import { loadConfig, type AppConfig } from "./config";
import { ToastProvider } from "./components/Toasts";
import { BillingPage } from "./pages/BillingPage";
import { AdminConsole } from "./pages/AdminConsole";

export interface Services {
  config: AppConfig;
  api: BillingClient;
  token: string;
}

const ServicesContext = createContext<Services | null>(null);

export function useServices(): Services {
  const services = useContext(ServicesContext);
  if (!services) throw new Error("no services");
  return services;
}

const queryClient = new QueryClient({
  defaultOptions: {
    // Money views refetch when the tab regains focus; errors are shown, not retried forever.
    queries: { retry: 1, staleTime: 10_000 },
    mutations: { retry: false },
  },
});

export function App() {
  takeTokenFromUrl();
  const [config, setConfig] = useState<AppConfig | null>(null);
  const [token, setTokenState] = useState<string | null>(getToken());
  useEffect(() => {
    void loadConfig().then(setConfig);
  }, []);
  const api = useMemo(
    () => (config ? createBillingClient(config.apiBaseUrl, () => getToken()) : null),
    [config],
  );
  const admin = window.location.pathname.replace(/\/$/, "").endsWith("/admin");

  if (!config || !api) return <div className="page"><div className="skeleton" style={{ height: 120 }} /></div>;
  if (!token) {
    return (
      <TokenForm
        onToken={(t) => {
          setToken(t);
          setTokenState(t);
        }}
      />
    );
  }
  return (
    <QueryClientProvider client={queryClient}>
      <ServicesContext.Provider value={{ config, api, token }}>
        <ToastProvider>
          <header className="topbar">
            <strong>{admin ? "Billing admin console" : "Billing & Credits"}</strong>
            <span className="muted">
              signed in as user {tokenSubject(token) ?? "?"} ·{" "}
              <button
                type="button"
                className="link"
                onClick={() => {
                  setToken(null);
                  setTokenState(null);
                  queryClient.clear();
                }}
              >
                sign out
              </button>
            </span>
          </header>
          {admin ? <AdminConsole /> : <BillingPage />}
        </ToastProvider>
      </ServicesContext.Provider>
    </QueryClientProvider>
  );
}

function TokenForm({ onToken }: { onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <div className="page narrow">
      <h1>Sign in</h1>
      <p className="muted">
        Paste the bearer token your panel issued (locally: the USER_TOKEN or ADMIN_TOKEN that infra/run.sh
        prints, or open the link it prints).
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) onToken(value.trim());
        }}
      >
        <textarea aria-label="Bearer token" rows={4} value={value} onChange={(e) => setValue(e.target.value)} />
        <button type="submit" className="primary">Continue</button>
      </form>
    </div>
  );
}
