import { describeError } from "../api/client";
import { useTransactions, type Transaction } from "../api/queries";
import { formatSignedUsd, formatTokens, formatUsd } from "../money";
import { Skeleton } from "./Skeleton";
import { typeLabel } from "./labels";

export function TransactionsTab() {
  const history = useTransactions();
  const items = history.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <div className="panel" data-testid="transactions">
      <h2>Transactions</h2>
      {history.isPending ? (
        [1, 2, 3, 4].map((i) => <Skeleton key={i} height={28} />)
      ) : history.isError ? (
        <p className="error">History could not be loaded: {describeError(history.error)}</p>
      ) : items.length === 0 ? (
        <p className="muted">No transactions yet.</p>
      ) : (
        <TransactionTable items={items} />
      )}
      {history.hasNextPage ? (
        <button
          type="button"
          disabled={history.isFetchingNextPage}
          onClick={() => void history.fetchNextPage()}
          data-testid="load-more"
        >
          {history.isFetchingNextPage ? <span className="spinner" aria-hidden /> : null}Load more
        </button>
      ) : null}
    </div>
  );
}

export function TransactionTable({ items }: { items: Transaction[] | AnyTransaction[] }) {
  return (
    <table className="history">
      <thead>
        <tr>
          <th>Date</th>
          <th>System</th>
          <th>Type</th>
          <th>Description</th>
          <th className="num">Amount</th>
          <th className="num">Balance after</th>
          <th>Status</th>
        </tr>
      </thead>
      <tbody>
        {(items as AnyTransaction[]).map((t) => (
          <tr key={`${t.system}:${t.id}`} data-testid="transaction-row">
            <td>{new Date(t.createdAt).toLocaleString()}</td>
            <td>{t.system === "virtfusion" ? "Tokens" : "Credits"}</td>
            <td>{typeLabel(t.type)}</td>
            <td>
              {t.description}
              {t.reason ? <div className="muted">Reason: {t.reason}</div> : null}
            </td>
            <td className={`num ${isNegative(t) ? "debit" : "credit"}`}>
              {t.system === "virtfusion" ? formatTokens(Number(t.amount)) : formatSignedUsd(String(t.amount))}
            </td>
            <td className="num">{t.balanceAfter ? formatUsd(t.balanceAfter) : ""}</td>
            <td><span className={`status ${t.status}`}>{t.status}</span></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The common shape of user and admin history items. */
export interface AnyTransaction {
  id: string;
  system: string;
  type: string;
  amount: string | number;
  status: string;
  description: string;
  createdAt: string;
  balanceAfter?: string;
  reason?: string | null;
}

function isNegative(t: AnyTransaction): boolean {
  return String(t.amount).startsWith("-");
}
