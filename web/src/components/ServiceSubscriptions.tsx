import { useServiceSubscriptions } from "../api/queries";
import { formatUsd } from "../money";
import { Skeleton } from "./Skeleton";

/** The caller's service subscriptions (dedicated servers, add-ons): read only here. */
export function ServiceSubscriptions() {
  const subscriptions = useServiceSubscriptions();
  if (subscriptions.isPending) return <Skeleton height={40} />;
  // null: this deployment has no subscriptions route yet; show nothing.
  if (subscriptions.isError || subscriptions.data === null) return null;
  const items = subscriptions.data.items.filter((s) => s.serviceType && s.serviceType !== "dns_plan");
  return (
    <div data-testid="service-subscriptions">
      <h2>Service subscriptions</h2>
      {items.length === 0 ? (
        <p className="muted">No service subscriptions.</p>
      ) : (
        <table>
          <thead>
            <tr><th>Service</th><th>Price</th><th>Status</th><th>Next renewal</th></tr>
          </thead>
          <tbody>
            {items.map((s) => (
              <tr key={s.id}>
                <td>{s.description ?? `${s.serviceType} ${s.serviceId ?? ""}`}</td>
                <td>{s.price ? `${formatUsd(s.price)}/${s.interval ?? "month"}` : "—"}</td>
                <td><span className={`status ${s.status}`}>{s.status}</span></td>
                <td>{s.nextRenewalDate ? new Date(s.nextRenewalDate).toLocaleDateString() : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
