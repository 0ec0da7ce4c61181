// The typed client: openapi-fetch over the types generated from
// docs/openapi.yaml (src/api/schema.d.ts; `npm run gen:api`). The bearer
// token rides on every request; errors become ApiError with the API's
// `error` / `code`.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";
import { formatUsd } from "../money";

export type { components, paths };
export type Schemas = components["schemas"];

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export type BillingClient = ReturnType<typeof createBillingClient>;

export function createBillingClient(baseUrl: string, token: () => string | null) {
  const client = createClient<paths>({ baseUrl });
  const auth: Middleware = {
    onRequest({ request }) {
      const t = token();
      if (t) request.headers.set("authorization", `Bearer ${t}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** One Idempotency-Key: a random UUID (1-255 printable ASCII, as the API requires). */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** The data of an openapi-fetch result, or throws ApiError. */
export async function unwrap<T>(
  promise: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result;
  try {
    result = await promise;
  } catch (e) {
    // fetch itself failed: network down, or CORS refused the answer.
    throw new ApiError(0, "The billing service cannot be reached. Check your connection and try again.");
  }
  const { data, error, response } = result;
  if (response.ok && data !== undefined) return data;
  if (response.ok) return undefined as T;
  throw toApiError(response.status, error);
}

export function toApiError(status: number, body: unknown): ApiError {
  const b = (body ?? {}) as { error?: unknown; message?: unknown; code?: unknown; details?: unknown };
  const message =
    typeof b.error === "string" ? b.error : typeof b.message === "string" ? b.message : `HTTP ${status}`;
  return new ApiError(status, message, typeof b.code === "string" ? b.code : undefined, b.details);
}

/**
 * For routes other helpers are adding that may not be in the generated
 * schema (or on the deployment) yet: a plain JSON call with the same auth and
 * errors; 404 of a missing route → `null`.
 */
export async function optionalJson<T>(
  baseUrl: string,
  token: string | null,
  path: string,
  init: RequestInit = {},
): Promise<T | null> {
  let response: Response;
  try {
    response = await fetch(baseUrl + path, {
      ...init,
      headers: {
        ...(init.headers ?? {}),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(init.body ? { "content-type": "application/json" } : {}),
      },
    });
  } catch {
    throw new ApiError(0, "The billing service cannot be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  // API Gateway's own 404 for an unknown route is {"message":"Not Found"}.
  if (response.status === 404 && body && typeof (body as { message?: unknown }).message === "string") {
    return null;
  }
  if (!response.ok) throw toApiError(response.status, body);
  return body as T;
}

/** What the user reads for an error: the API's message, framed by status. */
export function describeError(error: unknown): string {
  if (!(error instanceof ApiError)) return "Something went wrong. Please try again.";
  switch (error.status) {
    case 0:
      return error.message;
    case 401:
      return "Your session has expired. Sign in again.";
    case 402: {
      const balance = (error.details as { balance?: unknown } | undefined)?.balance;
      const have = typeof balance === "string" ? ` (your balance is ${formatUsd(balance)})` : "";
      return `Insufficient balance${have}. Add credits, then try again.`;
    }
    case 403:
      return "You are not allowed to do this.";
    case 409:
      return error.message;
    case 422:
      return `${error.message} (refresh the page and try again).`;
    case 502:
    case 503:
    case 504:
      return error.message && !error.message.startsWith("HTTP ")
        ? error.message
        : "A payment service is unavailable; nothing was changed. Try again in a moment.";
    default:
      return error.message;
  }
}
