import { useMutation } from "@tanstack/react-query";
import { useServices } from "../App";
import { describeError, unwrap } from "../api/client";
import { useDnsPlans, useDnsSubscription, useIntentKey, useRefreshMoney, useSingleFlight } from "../api/queries";
import { formatUsd } from "../money";
import { Skeleton } from "./Skeleton";
import { useToast } from "./Toasts";

export function DnsPlans() {
  const { api } = useServices();
  const plans = useDnsPlans();
  const subscription = useDnsSubscription();
  const refresh = useRefreshMoney();
  const toast = useToast();
  const intent = useIntentKey();
  const once = useSingleFlight();

  const buy = useMutation({
    mutationFn: (planId: string) =>
      unwrap(
        api.POST("/api/dns/plans/{planId}/purchase", {
          params: { path: { planId }, header: { "Idempotency-Key": intent.keyFor(`dns:${planId}`) } },
        }),
      ),
    onSuccess: (result) => {
      intent.done();
      toast("success", `Subscribed to ${result.subscription.planName}. Balance: ${formatUsd(result.balance)}.`);
    },
    // Kept on error: a retry after a timeout replays the first answer, and a
    // refused purchase (402/409) stored nothing under the key.
    onError: (e) => toast("error", describeError(e)),
    onSettled: () => refresh(),
  });

  const cancel = useMutation({
    mutationFn: () => unwrap(api.POST("/api/dns/subscription/cancel")),
    onSuccess: () => toast("success", "Auto-renew is off; the plan stays active until its renewal date."),
    onError: (e) => toast("error", describeError(e)),
    onSettled: () => refresh(),
  });

  const current = subscription.data?.subscription ?? null;
  const blocking = current && (current.status === "active" || current.status === "past_due");
  return (
    <div data-testid="dns">
      <h2>DNS plans</h2>
      {subscription.isPending ? (
        <Skeleton height={48} />
      ) : current ? (
        <div className="subscription" data-testid="dns-subscription">
          <div>
            <strong>{current.planName}</strong> · {formatUsd(current.price)}/month · <span className={`status ${current.status}`}>{current.status}</span>
          </div>
          <div className="muted">
            {current.autoRenew
              ? `Renews ${new Date(current.nextRenewalDate).toLocaleDateString()}`
              : `Active until ${new Date(current.nextRenewalDate).toLocaleDateString()} (auto-renew off)`}
            {" · "}
            {current.domainLimit} domains, {current.recordLimit} records
          </div>
          {current.autoRenew && current.status !== "expired" ? (
            <button type="button" disabled={cancel.isPending} onClick={() => cancel.mutate()} data-testid="dns-cancel">
              {cancel.isPending ? <span className="spinner" aria-hidden /> : null}Cancel auto-renew
            </button>
          ) : null}
        </div>
      ) : (
        <p className="muted">No DNS plan yet.</p>
      )}
      <div className="plans">
        {plans.isPending
          ? [1, 2, 3].map((i) => <Skeleton key={i} height={90} />)
          : plans.data?.plans.map((plan) => (
              <div className="plan" key={plan.id} data-testid={`plan-${plan.id}`}>
                <div className="plan-name">{plan.name}</div>
                <div className="plan-price">{formatUsd(plan.price)}<span className="muted">/month</span></div>
                <div className="muted">{plan.description}</div>
                <div className="muted">
                  {plan.domainLimit} domains · {plan.recordLimit} records
                </div>
                <button
                  type="button"
                  className="primary"
                  disabled={buy.isPending || Boolean(blocking)}
                  data-testid={`buy-${plan.id}`}
                  onClick={() => void once(() => buy.mutateAsync(plan.id)).catch(() => {})}
                >
                  {buy.isPending && buy.variables === plan.id ? <span className="spinner" aria-hidden /> : null}
                  {current?.planId === plan.id && blocking ? "Current plan" : `Buy for ${formatUsd(plan.price)}`}
                </button>
              </div>
            ))}
      </div>
      {plans.isError ? <p className="error">Plans could not be loaded: {describeError(plans.error)}</p> : null}
      {buy.isError ? (
        <p className="error" role="alert" data-testid="dns-error">
          {describeError(buy.error)}
        </p>
      ) : null}
    </div>
  );
}
