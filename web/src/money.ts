// Exact money helpers: amounts stay decimal strings on the wire ("12.50") and
// are held as integer cents (bigint) in between. Never a float.

/** The API's decimal text: optional sign, digits, optional 1-2 decimals. */
const DECIMAL = /^(-?)(\d+)(?:\.(\d{1,2}))?$/;

/** Cents of an API money string ("12.50", "-5.00"); null if not one. */
export function toCents(text: string): bigint | null {
  const m = DECIMAL.exec(text.trim());
  if (!m) return null;
  const [, sign, whole, frac = ""] = m;
  const cents = BigInt(whole!) * 100n + BigInt((frac + "00").slice(0, 2));
  return sign === "-" ? -cents : cents;
}

/** "12.50" for 1250n; "-5.00" for -500n. */
export function centsToDecimal(cents: bigint): string {
  const negative = cents < 0n;
  const abs = negative ? -cents : cents;
  const whole = abs / 100n;
  const frac = (abs % 100n).toString().padStart(2, "0");
  return `${negative ? "-" : ""}${whole}.${frac}`;
}

function groupThousands(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** "$1,250.00" (and "-$5.00") from cents. */
export function formatCents(cents: bigint): string {
  const negative = cents < 0n;
  const abs = negative ? -cents : cents;
  const whole = groupThousands((abs / 100n).toString());
  const frac = (abs % 100n).toString().padStart(2, "0");
  return `${negative ? "-" : ""}$${whole}.${frac}`;
}

/** "$1,250.00" from an API money string; the text itself if it is not one. */
export function formatUsd(text: string): string {
  const cents = toCents(text);
  return cents === null ? text : formatCents(cents);
}

/** "+$5.00" / "-$5.00": a signed history amount. */
export function formatSignedUsd(text: string): string {
  const cents = toCents(text);
  if (cents === null) return text;
  return cents > 0n ? `+${formatCents(cents)}` : formatCents(cents);
}

/** "1,250 Tokens". */
export function formatTokens(tokens: number | bigint): string {
  const n = BigInt(tokens);
  const negative = n < 0n;
  const text = groupThousands((negative ? -n : n).toString());
  return `${negative ? "-" : ""}${text} ${n === 1n || n === -1n ? "Token" : "Tokens"}`;
}

/** 100 VirtFusion tokens per $1.00: one token per cent. */
export function tokensForCents(cents: bigint): bigint {
  return cents;
}

export type AmountCheck =
  | { ok: true; cents: bigint; wire: string }
  | { ok: false; error: string };

/**
 * Validates what a user typed as a USD amount the way the API does: plain
 * decimal (no exponent, sign, leading zeros or more than two places), within
 * [min, max] cents. `wire` is the exact string to send.
 */
export function checkAmount(input: string, minCents: bigint, maxCents: bigint): AmountCheck {
  const text = input.trim();
  if (text === "") return { ok: false, error: "Enter an amount." };
  if (!/^(0|[1-9]\d*)(\.\d{1,2})?$/.test(text)) {
    if (/^\d*\.\d{3,}$/.test(text)) {
      return { ok: false, error: "At most two decimal places (cents)." };
    }
    return { ok: false, error: "Enter an amount like 10 or 10.50." };
  }
  const cents = toCents(text);
  if (cents === null) return { ok: false, error: "Enter an amount like 10 or 10.50." };
  if (cents < minCents || cents > maxCents) {
    return {
      ok: false,
      error: `The amount must be between ${formatCents(minCents)} and ${formatCents(maxCents)}.`,
    };
  }
  return { ok: true, cents, wire: centsToDecimal(cents) };
}

/** Purchases of credits or tokens: $1.00 to $1,000.00 (API.md). */
export const PURCHASE_MIN_CENTS = 100n;
export const PURCHASE_MAX_CENTS = 100_000n;
/** Admin changes: more than $0 up to $100,000.00. */
export const ADMIN_MIN_CENTS = 1n;
export const ADMIN_MAX_CENTS = 10_000_000n;

/** Tokens of an admin grant (API.md "token management"): a whole number 1 – 10,000,000; null otherwise. */
export function checkGrantTokens(text: string): number | null {
  const trimmed = text.trim();
  if (!/^[1-9][0-9]{0,7}$/.test(trimmed)) return null;
  const count = Number(trimmed);
  return count <= 10_000_000 ? count : null;
}
