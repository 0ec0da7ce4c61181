// Server state (TanStack Query): one key per resource, invalidated after
// every money move so both balances and the history refresh.
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { useRef } from "react";
import { useServices } from "../App";
import { newIdempotencyKey, optionalJson, unwrap, type Schemas } from "./client";

export const keys = {
  balance: ["balance"] as const,
  transactions: ["transactions"] as const,
  plans: ["dns", "plans"] as const,
  dnsSubscription: ["dns", "subscription"] as const,
  subscriptions: ["subscriptions"] as const,
};

export function useBalance() {
  const { api } = useServices();
  return useQuery({
    queryKey: keys.balance,
    queryFn: () => unwrap(api.GET("/api/billing/balance")),
  });
}

export const PAGE_SIZE = 10;

export function useTransactions() {
  const { api } = useServices();
  return useInfiniteQuery({
    queryKey: keys.transactions,
    initialPageParam: null as string | null,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET("/api/billing/transactions", {
          params: { query: { limit: PAGE_SIZE, ...(pageParam ? { cursor: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (last) => last.nextCursor ?? null,
  });
}

export function useDnsPlans() {
  const { api } = useServices();
  return useQuery({ queryKey: keys.plans, queryFn: () => unwrap(api.GET("/api/dns/plans")) });
}

export function useDnsSubscription() {
  const { api } = useServices();
  return useQuery({
    queryKey: keys.dnsSubscription,
    queryFn: () => unwrap(api.GET("/api/dns/subscription")),
  });
}

/** A service subscription (GET /api/billing/subscriptions, API.md "Platform services"). */
export interface ServiceSubscription {
  id: string;
  serviceType?: string;
  serviceId?: string;
  planId?: string;
  description?: string;
  price?: string;
  interval?: string;
  status: string;
  autoRenew?: boolean;
  nextRenewalDate?: string;
}

/** `null` data: the deployment has no such route yet (404 from the gateway). */
export function useServiceSubscriptions() {
  const { config, token } = useServices();
  return useQuery({
    queryKey: keys.subscriptions,
    queryFn: () =>
      optionalJson<{ items: ServiceSubscription[] }>(config.apiBaseUrl, token, "/api/billing/subscriptions"),
  });
}

export function useRefreshMoney() {
  const client = useQueryClient();
  return () =>
    Promise.all([
      client.invalidateQueries({ queryKey: keys.balance }),
      client.invalidateQueries({ queryKey: keys.transactions }),
      client.invalidateQueries({ queryKey: keys.dnsSubscription }),
      client.invalidateQueries({ queryKey: keys.subscriptions }),
    ]);
}

/**
 * One Idempotency-Key per intent: the same key for every attempt of the same
 * intent (a retry after a timeout replays the first answer instead of paying
 * twice), a new one once the intent changed or completed.
 */
export function useIntentKey() {
  const current = useRef<{ intent: string; key: string } | null>(null);
  return {
    keyFor(intent: string): string {
      if (current.current?.intent !== intent) {
        current.current = { intent, key: newIdempotencyKey() };
      }
      return current.current.key;
    },
    done(): void {
      current.current = null;
    },
  };
}

export type Transaction = Schemas["Transaction"];

/**
 * A synchronous in-flight guard for money-moving clicks: a double click
 * fires twice before React re-renders a disabled button; the second is
 * dropped here (and would anyway carry the same Idempotency-Key).
 */
export function useSingleFlight() {
  const busy = useRef(false);
  return async function run<T>(action: () => Promise<T>): Promise<T | undefined> {
    if (busy.current) return undefined;
    busy.current = true;
    try {
      return await action();
    } finally {
      busy.current = false;
    }
  };
}
