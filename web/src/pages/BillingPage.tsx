import { useState } from "react";
import { useBalance } from "../api/queries";
import { Skeleton } from "../components/Skeleton";
import { CreditsTab } from "../components/CreditsTab";
import { TokensTab } from "../components/TokensTab";
import { TransactionsTab } from "../components/TransactionsTab";

type Tab = "tokens" | "credits" | "transactions";

export function BillingPage() {
  const [tab, setTab] = useState<Tab>("credits");
  return (
    <main className="page">
      <h1>Billing &amp; Credits</h1>
      <Balances />
      <nav className="tabs" role="tablist">
        {(
          [
            ["tokens", "VirtFusion Tokens"],
            ["credits", "Custom Credits"],
            ["transactions", "Transactions"],
          ] as const
        ).map(([id, label]) => (
          <button
            key={id}
            type="button"
            role="tab"
            aria-selected={tab === id}
            className={tab === id ? "tab active" : "tab"}
            onClick={() => setTab(id)}
          >
            {label}
          </button>
        ))}
      </nav>
      <section role="tabpanel">
        {tab === "tokens" ? <TokensTab /> : tab === "credits" ? <CreditsTab /> : <TransactionsTab />}
      </section>
    </main>
  );
}

function Balances() {
  const balance = useBalance();
  const data = balance.data;
  return (
    <div className="balances">
      <div className="card" data-testid="tokens-balance">
        <div className="card-title">VirtFusion Tokens</div>
        <div className="card-value">
          {balance.isPending ? (
            <Skeleton width={160} height={32} />
          ) : data?.virtFusion.available ? (
            data.virtFusion.formatted
          ) : data ? (
            <span className="warn">VirtFusion unavailable</span>
          ) : (
            "—"
          )}
        </div>
        <div className="card-subtitle">
          {data && !data.virtFusion.available
            ? "Your token balance cannot be shown right now; nothing is lost. Try again later."
            : "For VPS services only"}
        </div>
      </div>
      <div className="card" data-testid="credits-balance">
        <div className="card-title">Custom Credits</div>
        <div className="card-value">
          {balance.isPending ? <Skeleton width={160} height={32} /> : data ? data.customCredits.formatted : "—"}
        </div>
        <div className="card-subtitle">For DNS plans and other services</div>
      </div>
      {balance.isError ? (
        <p className="error" role="alert">
          Balances could not be loaded: {balance.error.message}{" "}
          <button type="button" className="link" onClick={() => void balance.refetch()}>
            retry
          </button>
        </p>
      ) : null}
    </div>
  );
}
