// The admin console: find a user, add/remove credits with a reason, grant
// VirtFusion tokens, refunds (optional note to the payer), token deliveries
// under review, every user's credit entries, reconciliation.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useServices } from "../App";
import { ApiError, describeError, unwrap } from "../api/client";
import { useIntentKey, useSingleFlight } from "../api/queries";
import { Skeleton } from "../components/Skeleton";
import { TransactionTable, type AnyTransaction } from "../components/TransactionsTab";
import { typeLabel } from "../components/labels";
import { useToast } from "../components/Toasts";
import { ADMIN_MAX_CENTS, ADMIN_MIN_CENTS, checkAmount, checkGrantTokens, formatUsd } from "../money";

export function AdminConsole() {
  const [userId, setUserId] = useState<string | null>(null);
  const [draft, setDraft] = useState("");
  return (
    <main className="page">
      <h1>Billing admin console</h1>
      <form
        className="finder"
        onSubmit={(e) => {
          e.preventDefault();
          if (draft.trim()) setUserId(draft.trim());
        }}
      >
        <label>
          User id
          <input value={draft} onChange={(e) => setDraft(e.target.value)} placeholder="e.g. 1001" data-testid="admin-user" />
        </label>
        <button type="submit" className="primary" data-testid="admin-find">Find user</button>
      </form>
      {userId ? <UserCredits userId={userId} /> : null}
      <div className="grid">
        <Refunds />
        <Deliveries />
      </div>
      <AllTransactions />
      <Reconciliation />
    </main>
  );
}

function UserCredits({ userId }: { userId: string }) {
  const { api } = useServices();
  const user = useQuery({
    queryKey: ["admin", "user", userId],
    queryFn: () => unwrap(api.GET("/api/admin/users/{id}/custom-credits", { params: { path: { id: userId } } })),
  });
  return (
    <section className="panel" data-testid="admin-user-panel">
      <h2>User {userId}</h2>
      {user.isPending ? (
        <Skeleton height={40} />
      ) : user.isError ? (
        <p className="error">{describeError(user.error)}</p>
      ) : (
        <>
          <p>
            Custom credits: <strong data-testid="admin-balance">{user.data.formatted}</strong>
          </p>
          <AdjustCredits userId={userId} />
          <GrantTokens userId={userId} />
          <h3>Credit history</h3>
          {user.data.transactions.length === 0 ? (
            <p className="muted">No entries.</p>
          ) : (
            <TransactionTable items={user.data.transactions as AnyTransaction[]} />
          )}
        </>
      )}
    </section>
  );
}

function AdjustCredits({ userId }: { userId: string }) {
  const { api } = useServices();
  const client = useQueryClient();
  const toast = useToast();
  const intent = useIntentKey();
  const once = useSingleFlight();
  const [amount, setAmount] = useState("");
  const [reason, setReason] = useState("");
  const check = checkAmount(amount, ADMIN_MIN_CENTS, ADMIN_MAX_CENTS);
  const reasonOk = reason.trim().length > 0;
  const change = useMutation({
    mutationFn: (direction: "add" | "remove") => {
      if (!check.ok) throw new Error(check.error);
      const body = { amount: check.wire, reason: reason.trim() };
      const params = {
        path: { id: userId },
        header: { "Idempotency-Key": intent.keyFor(`${direction}:${userId}:${body.amount}:${body.reason}`) },
      };
      return unwrap(
        direction === "add"
          ? api.POST("/api/admin/users/{id}/custom-credits", { params, body })
          : api.DELETE("/api/admin/users/{id}/custom-credits", { params, body }),
      );
    },
    onSuccess: (result, direction) => {
      intent.done();
      toast("success", `${direction === "add" ? "Added" : "Removed"}. Balance: ${formatUsd(result.balance)}.`);
      setAmount("");
      setReason("");
    },
    onError: (e) => toast("error", describeError(e)),
    onSettled: () => client.invalidateQueries({ queryKey: ["admin", "user", userId] }),
  });
  const ready = check.ok && reasonOk && !change.isPending;
  return (
    <form className="inline-form" onSubmit={(e) => e.preventDefault()}>
      <label>
        Amount (USD)
        <input value={amount} onChange={(e) => setAmount(e.target.value)} data-testid="admin-amount" inputMode="decimal" />
      </label>
      <label>
        Reason (required, audited)
        <input value={reason} onChange={(e) => setReason(e.target.value)} data-testid="admin-reason" />
      </label>
      <button type="button" className="primary" disabled={!ready} onClick={() => void once(() => change.mutateAsync("add")).catch(() => {})} data-testid="admin-add">
        Add credits
      </button>
      <button type="button" disabled={!ready} onClick={() => void once(() => change.mutateAsync("remove")).catch(() => {})} data-testid="admin-remove">
        Remove credits
      </button>
      {amount && !check.ok ? <p className="error">{check.error}</p> : null}
      {change.isError ? <p className="error" role="alert">{describeError(change.error)}</p> : null}
    </form>
  );
}

function GrantTokens({ userId }: { userId: string }) {
  const { api } = useServices();
  const toast = useToast();
  const intent = useIntentKey();
  const once = useSingleFlight();
  const [tokens, setTokens] = useState("");
  const [reason, setReason] = useState("");
  const count = checkGrantTokens(tokens);
  const grant = useMutation({
    mutationFn: () => {
      if (count === null) throw new Error("Tokens must be a whole number from 1 to 10,000,000.");
      const body = { tokens: count, reason: reason.trim() };
      // Required by the API: a retried grant must never add tokens twice.
      const key = intent.keyFor(`grant:${userId}:${body.tokens}:${body.reason}`);
      return unwrap(
        api.POST("/api/admin/users/{id}/virtfusion-tokens", {
          params: { path: { id: userId }, header: { "Idempotency-Key": key } },
          body,
        }),
      );
    },
    onSuccess: (result) => {
      intent.done();
      if (result.status === "completed") {
        const balance = result.balance === null ? "" : ` VirtFusion balance: ${result.balance.toLocaleString()} tokens.`;
        toast("success", `Granted ${result.tokens.toLocaleString()} tokens (credit ${result.creditId}).${balance}`);
      } else {
        toast("error", "VirtFusion did not confirm the grant: it is listed under review below. Do not grant again.");
      }
      setTokens("");
      setReason("");
    },
    onError: (e) => toast("error", describeError(e)),
  });
  const ready = count !== null && reason.trim().length > 0 && !grant.isPending;
  return (
    <form className="inline-form" onSubmit={(e) => e.preventDefault()}>
      <label>
        VirtFusion tokens
        <input value={tokens} onChange={(e) => setTokens(e.target.value)} inputMode="numeric" data-testid="admin-tokens" />
      </label>
      <label>
        Reason (required, audited)
        <input value={reason} onChange={(e) => setReason(e.target.value)} data-testid="admin-tokens-reason" />
      </label>
      <button type="button" className="primary" disabled={!ready} onClick={() => void once(() => grant.mutateAsync()).catch(() => {})} data-testid="admin-grant">
        Grant tokens
      </button>
      {tokens && count === null ? <p className="error">Tokens must be a whole number from 1 to 10,000,000.</p> : null}
    </form>
  );
}

function Refunds() {
  const { api } = useServices();
  const toast = useToast();
  const intent = useIntentKey();
  const [orderId, setOrderId] = useState("");
  const [amount, setAmount] = useState("");
  const [reason, setReason] = useState("");
  const [note, setNote] = useState("");
  const once = useSingleFlight();
  const amountCheck = amount.trim() === "" ? null : checkAmount(amount, ADMIN_MIN_CENTS, ADMIN_MAX_CENTS);
  const refund = useMutation({
    mutationFn: () => {
      const body: { orderId: string; reason: string; amount?: string; noteToPayer?: string } = {
        orderId: orderId.trim(),
        reason: reason.trim(),
      };
      if (amountCheck?.ok) body.amount = amountCheck.wire;
      if (note.trim()) body.noteToPayer = note.trim();
      // Required by the API: a retried refund must never become a second PayPal refund.
      const key = intent.keyFor(JSON.stringify(body));
      return unwrap(
        api.POST("/api/admin/refunds", {
          body: body as { orderId: string; reason: string; amount?: string },
          params: { header: { "Idempotency-Key": key } },
        }),
      );
    },
    onSuccess: (result) => {
      intent.done();
      toast("success", `Refunded ${formatUsd(result.amount)} (refund ${result.refundId}).`);
    },
    onError: (e) => toast("error", describeError(e)),
  });
  const ready =
    orderId.trim() && reason.trim() && (amountCheck === null || amountCheck.ok) && note.length <= 255 && !refund.isPending;
  return (
    <section className="panel">
      <h2>Refund a PayPal payment</h2>
      <form className="stack" onSubmit={(e) => e.preventDefault()}>
        <label>
          PayPal order id
          <input value={orderId} onChange={(e) => setOrderId(e.target.value)} />
        </label>
        <label>
          Amount (empty: the whole remaining capture)
          <input value={amount} onChange={(e) => setAmount(e.target.value)} inputMode="decimal" />
        </label>
        {amountCheck && !amountCheck.ok ? <p className="error">{amountCheck.error}</p> : null}
        <label>
          Reason (internal, audited)
          <input value={reason} onChange={(e) => setReason(e.target.value)} />
        </label>
        <label>
          Note to the payer (optional, shown by PayPal; {255 - note.length} characters left)
          <input value={note} maxLength={255} onChange={(e) => setNote(e.target.value)} />
        </label>
        <button type="button" className="primary" disabled={!ready} onClick={() => void once(() => refund.mutateAsync()).catch(() => {})}>
          {refund.isPending ? <span className="spinner" aria-hidden /> : null}Refund
        </button>
        {refund.isError ? <p className="error" role="alert">{describeError(refund.error)}</p> : null}
      </form>
    </section>
  );
}

function Deliveries() {
  const { api } = useServices();
  const client = useQueryClient();
  const toast = useToast();
  const list = useQuery({
    queryKey: ["admin", "deliveries"],
    queryFn: () =>
      unwrap(api.GET("/api/admin/virtfusion-deliveries", { params: { query: { status: "needs_review" } } })),
  });
  const [reason, setReason] = useState("");
  const [creditId, setCreditId] = useState("");
  const resolve = useMutation({
    mutationFn: ({ orderId, delivered }: { orderId: string; delivered: boolean }) => {
      const credit = Number(creditId.trim());
      const withCredit = delivered && creditId.trim() !== "" && Number.isInteger(credit) && credit > 0;
      return unwrap(
        api.POST("/api/admin/virtfusion-deliveries/{orderId}/resolve", {
          params: { path: { orderId } },
          body: withCredit ? { delivered, creditId: credit, reason: reason.trim() } : { delivered, reason: reason.trim() },
        }),
      );
    },
    onSuccess: () => toast("success", "Delivery resolved."),
    onError: (e) => toast("error", describeError(e)),
    onSettled: () => client.invalidateQueries({ queryKey: ["admin", "deliveries"] }),
  });
  const items =
    (list.data as
      | {
          items?: Array<{
            orderId: string;
            userId: string;
            tokens: number | null;
            amount: string | null;
            kind?: string;
            operation?: string;
            reviewReason?: string | null;
            refundedAmount?: string;
            owedTokens?: number;
            createdAt: string;
          }>;
        }
      | undefined)?.items ?? [];
  return (
    <section className="panel" data-testid="deliveries">
      <h2>Token deliveries under review</h2>
      {list.isPending ? (
        <Skeleton height={40} />
      ) : list.isError ? (
        <p className="error">{describeError(list.error)}</p>
      ) : items.length === 0 ? (
        <p className="muted">Nothing to review.</p>
      ) : (
        <>
          <label>
            Reason for the resolution
            <input value={reason} onChange={(e) => setReason(e.target.value)} />
          </label>
          <label>
            VirtFusion credit id (when a credit is there)
            <input value={creditId} inputMode="numeric" onChange={(e) => setCreditId(e.target.value)} />
          </label>
          <p className="muted">
            Say what VirtFusion shows; the system delivers or removes what the purchase owes after its refunds.
          </p>
          <table>
            <thead>
              <tr><th>Order / grant</th><th>User</th><th>Tokens</th><th>Paid</th><th>Refunded</th><th>Owed</th><th>Why</th><th /></tr>
            </thead>
            <tbody>
              {items.map((d) => (
                <tr key={d.orderId}>
                  <td>
                    {d.orderId}
                    {d.kind === "admin_grant" ? <span className="muted"> (admin {d.operation === "removal" ? "removal" : "grant"})</span> : null}
                  </td>
                  <td>{d.userId}</td>
                  <td>{d.tokens ?? "—"}</td>
                  <td>{d.amount ? formatUsd(d.amount) : "—"}</td>
                  <td>{d.refundedAmount ? formatUsd(d.refundedAmount) : "—"}</td>
                  <td>{d.owedTokens ?? "—"}</td>
                  <td>{d.reviewReason ?? "—"}</td>
                  <td>
                    <button type="button" disabled={!reason.trim() || resolve.isPending} onClick={() => resolve.mutate({ orderId: d.orderId, delivered: true })}>
                      Was delivered
                    </button>{" "}
                    <button type="button" disabled={!reason.trim() || resolve.isPending} onClick={() => resolve.mutate({ orderId: d.orderId, delivered: false })}>
                      Not delivered
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

type LedgerPage = { items: Array<AnyTransaction & { userId: string; adminId?: string | null }>; nextCursor: string | null };

function AllTransactions() {
  const { api } = useServices();
  const [draft, setDraft] = useState({ type: "", from: "", to: "" });
  const [filters, setFilters] = useState(draft);
  const [pages, setPages] = useState<LedgerPage[]>([]);
  const query = (cursor?: string) => {
    const q: { limit: number; cursor?: string; type?: string; from?: string; to?: string } = { limit: 25 };
    if (cursor) q.cursor = cursor;
    else {
      if (filters.type) q.type = filters.type;
      if (filters.from) q.from = filters.from;
      if (filters.to) q.to = filters.to;
    }
    return unwrap(api.GET("/api/admin/transactions", { params: { query: q } })) as Promise<LedgerPage>;
  };
  // Later pages are appended by "Load more": keep the first one still meanwhile.
  const first = useQuery({ queryKey: ["admin", "transactions", filters], queryFn: () => query(), refetchOnWindowFocus: false });
  const more = useMutation({
    mutationFn: (cursor: string) => query(cursor),
    onSuccess: (page) => setPages((all) => [...all, page]),
  });
  const loaded = first.data ? [first.data, ...pages] : [];
  const items = loaded.flatMap((p) => p.items);
  const next = loaded.length ? loaded[loaded.length - 1]!.nextCursor : null;
  return (
    <section className="panel" data-testid="admin-transactions">
      <h2>All credit transactions</h2>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          setPages([]);
          setFilters({ type: draft.type.trim(), from: draft.from, to: draft.to });
        }}
      >
        <label>
          Type (e.g. admin_add, service_purchase)
          <input value={draft.type} onChange={(e) => setDraft({ ...draft, type: e.target.value })} />
        </label>
        <label>
          From
          <input type="date" value={draft.from} onChange={(e) => setDraft({ ...draft, from: e.target.value })} />
        </label>
        <label>
          To
          <input type="date" value={draft.to} onChange={(e) => setDraft({ ...draft, to: e.target.value })} />
        </label>
        <button type="submit">Show</button>
      </form>
      {first.isPending ? (
        <Skeleton height={40} />
      ) : first.isError ? (
        <p className="error">{describeError(first.error)}</p>
      ) : (
        <>
          {items.length === 0 ? <p className="muted">No entries on this page.</p> : null}
          {items.length ? (
            <table>
              <thead>
                <tr><th>Date</th><th>User</th><th>Type</th><th className="num">Amount</th><th className="num">Balance after</th><th>Admin / reason</th></tr>
              </thead>
              <tbody>
                {items.map((t) => (
                  <tr key={`${t.userId}:${t.id}`} data-testid="admin-transaction-row">
                    <td>{new Date(t.createdAt).toLocaleString()}</td>
                    <td>{t.userId}</td>
                    <td>{typeLabel(t.type)}</td>
                    <td className="num">{formatUsd(String(t.amount))}</td>
                    <td className="num">{t.balanceAfter ? formatUsd(t.balanceAfter) : "—"}</td>
                    <td>{t.adminId ? `${t.adminId}: ${t.reason ?? ""}` : "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
          {next ? (
            <button type="button" disabled={more.isPending} onClick={() => more.mutate(next)}>
              {more.isPending ? <span className="spinner" aria-hidden /> : null}Load more
            </button>
          ) : null}
          {more.isError ? <p className="error">{describeError(more.error)}</p> : null}
        </>
      )}
    </section>
  );
}

function Reconciliation() {
  const { api } = useServices();
  const client = useQueryClient();
  const toast = useToast();
  const report = useQuery({
    queryKey: ["admin", "reconciliation"],
    queryFn: () => unwrap(api.GET("/api/admin/reconciliation")),
  });
  const [reason, setReason] = useState("");
  const once = useSingleFlight();
  const resolve = useMutation({
    mutationFn: (mismatchId: string) =>
      unwrap(
        api.POST("/api/admin/reconciliation/{mismatchId}/resolve", {
          params: { path: { mismatchId } },
          body: { reason: reason.trim() },
        }),
      ),
    onSuccess: () => toast("success", "Mismatch resolved."),
    onError: (e) => toast("error", describeError(e)),
    onSettled: () => client.invalidateQueries({ queryKey: ["admin", "reconciliation"] }),
  });
  if (report.isPending) return <Skeleton height={40} />;
  if (report.isError) {
    const missing = report.error instanceof ApiError && report.error.status === 404;
    return (
      <section className="panel">
        <h2>Reconciliation</h2>
        <p className={missing ? "muted" : "error"}>
          {missing ? "This deployment has no reconciliation report yet." : describeError(report.error)}
        </p>
      </section>
    );
  }
  const last = report.data.runs[0];
  const open = report.data.openMismatches;
  return (
    <section className="panel" data-testid="reconciliation">
      <h2>Reconciliation</h2>
      <p className="muted">
        {last
          ? `Last run ${new Date(last.startedAt).toLocaleString()}: ${last.checked} checked, ${last.healed} healed, ${last.mismatches} open mismatches${last.complete ? "" : " (incomplete)"}.`
          : "No run yet."}
      </p>
      {open.length === 0 ? (
        <p>No open mismatches.</p>
      ) : (
        <>
          <label>
            Reason for the resolution (audited)
            <input value={reason} onChange={(e) => setReason(e.target.value)} />
          </label>
          <table>
            <thead>
              <tr><th>Detected</th><th>Kind</th><th>Order / user</th><th className="num">PayPal</th><th className="num">Ledger</th><th>Detail</th><th /></tr>
            </thead>
            <tbody>
              {open.map((m) => (
                <tr key={m.id}>
                  <td>{new Date(m.detectedAt).toLocaleString()}</td>
                  <td>{m.kind.replace(/_/g, " ")}</td>
                  <td>{m.orderId ?? "—"} / {m.user ?? "—"}</td>
                  <td className="num">{m.paypalAmount ? formatUsd(m.paypalAmount) : "—"}</td>
                  <td className="num">{m.ledgerAmount ? formatUsd(m.ledgerAmount) : "—"}</td>
                  <td>{m.detail}</td>
                  <td>
                    <button type="button" disabled={!reason.trim() || resolve.isPending} onClick={() => void once(() => resolve.mutateAsync(m.id)).catch(() => {})}>
                      Resolve
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
