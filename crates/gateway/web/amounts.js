// Token amounts in the web app: the ledger counts every token (VVV, sVVV, DIEM) and every dollar
// in integer base units of 10^-18, sent as decimal strings (`*_units`). Here they are BigInts
// from the moment they arrive until they are shown, and what a person types is parsed straight
// into base units: no amount ever passes through a float, so nothing is rounded on the way.
// Pure functions only (no page, no network), so node can test them as they are.

export const DECIMALS = 18;
const SCALE = 10n ** BigInt(DECIMALS);

/** Base units from the gateway's decimal string; throws on anything else. */
export function units(text) {
  if (typeof text !== "string" || !/^\d+$/.test(text)) throw new Error(`not base units: ${JSON.stringify(text)}`);
  return BigInt(text);
}

/**
 * Base units from what a person typed: a plain decimal with up to 18 places ("1", "0.5",
 * "1,000.25" and "1_000" too). Throws an Error saying what is wrong, in words.
 */
export function parseAmount(text) {
  const cleaned = String(text).trim().replace(/[,_\s]/g, "");
  if (cleaned === "") throw new Error("Enter an amount.");
  const match = /^(\d*)(?:\.(\d*))?$/.exec(cleaned);
  if (!match || (match[1] === "" && (match[2] ?? "") === "")) throw new Error(`“${text}” is not an amount: use digits and at most one decimal point.`);
  const fraction = match[2] ?? "";
  if (fraction.length > DECIMALS) throw new Error(`At most ${DECIMALS} decimal places.`);
  return BigInt(match[1] || "0") * SCALE + BigInt(fraction.padEnd(DECIMALS, "0") || "0");
}

/** The exact decimal of `value` base units, with no trailing zeros ("1000", "0.05"). */
export function exactDecimal(value) {
  const whole = value / SCALE;
  const fraction = (value % SCALE).toString().padStart(DECIMALS, "0").replace(/0+$/, "");
  return fraction ? `${whole}.${fraction}` : `${whole}`;
}

/**
 * `value` base units for reading: thousands grouped, at most `places` decimals, cut and never
 * rounded (a balance is never overstated), trailing zeros dropped, and "<0.000001" rather than
 * "0" for a dust amount that is not zero.
 */
export function formatAmount(value, places = 6) {
  const whole = value / SCALE;
  const fraction = (value % SCALE).toString().padStart(DECIMALS, "0").slice(0, places).replace(/0+$/, "");
  if (whole === 0n && fraction === "" && value > 0n) return `<0.${"0".repeat(Math.max(places - 1, 0))}1`;
  const grouped = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction ? `${grouped}.${fraction}` : grouped;
}

/** Dollars (base units) for reading: exactly two decimals, cut. */
export function formatUsd(value) {
  const whole = value / SCALE;
  const cents = ((value % SCALE) / 10n ** BigInt(DECIMALS - 2)).toString().padStart(2, "0");
  return `$${whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${cents}`;
}

/** Basis points from a slippage percentage a person typed ("0.5" → 50); throws in words. */
export function parseSlippagePercent(text) {
  const cleaned = String(text).trim();
  const match = /^(\d{1,3})(?:\.(\d{0,2}))?$/.exec(cleaned);
  if (!match) throw new Error("Slippage is a percentage from 0 to 100, with at most two decimals.");
  const bps = Number(match[1]) * 100 + Number((match[2] ?? "").padEnd(2, "0"));
  if (bps > 10_000) throw new Error("Slippage is a percentage from 0 to 100.");
  return bps;
}

/** The least a quote may shrink to: `quoted` less `bps` basis points, rounded down (as the CLI). */
export function minimumAfterSlippage(quoted, bps) {
  return (quoted * BigInt(10_000 - bps)) / 10_000n;
}

/** "6 d 23:59:58", "4:05:09", "0:00:07": what is left of `seconds` (0 when past). */
export function formatCountdown(seconds) {
  const left = Math.max(0, Math.floor(seconds));
  const days = Math.floor(left / 86_400);
  const hours = Math.floor((left % 86_400) / 3_600);
  const minutes = Math.floor((left % 3_600) / 60);
  const secs = left % 60;
  const clock = `${hours}:${String(minutes).padStart(2, "0")}:${String(secs).padStart(2, "0")}`;
  return days > 0 ? `${days} d ${clock}` : clock;
}
