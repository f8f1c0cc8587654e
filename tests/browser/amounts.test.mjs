// The wallet page's arithmetic (crates/gateway/web/amounts.js), run in node as the browser runs
// it: amounts typed and shown in exact base units, slippage minimums as the CLI computes them,
// countdowns.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { repo } from "./support.mjs";

// The app's modules are served as they are, not packaged for node: load the source as a module.
const source = readFileSync(path.join(repo, "crates", "gateway", "web", "amounts.js"), "utf8");
const amounts = await import(`data:text/javascript,${encodeURIComponent(source)}`);
const UNIT = 10n ** 18n;

test("typed amounts become exact base units, and malformed ones are refused in words", () => {
  assert.equal(amounts.parseAmount("1"), UNIT);
  assert.equal(amounts.parseAmount(" 1,000.5 "), 1000n * UNIT + UNIT / 2n);
  assert.equal(amounts.parseAmount(".25"), UNIT / 4n);
  assert.equal(amounts.parseAmount("0.000000000000000001"), 1n);
  assert.equal(amounts.parseAmount("340282366920938463463.374607431768211455"), 2n ** 128n - 1n, "u128::MAX base units, no float in the way");
  assert.throws(() => amounts.parseAmount(""), /Enter an amount/);
  assert.throws(() => amounts.parseAmount("1e3"), /not an amount/);
  assert.throws(() => amounts.parseAmount("-1"), /not an amount/);
  assert.throws(() => amounts.parseAmount("1.2.3"), /not an amount/);
  assert.throws(() => amounts.parseAmount("."), /not an amount/);
  assert.throws(() => amounts.parseAmount("0.0000000000000000001"), /At most 18 decimal places/);
  assert.throws(() => amounts.units("12.5"), /not base units/);
  assert.equal(amounts.units("12"), 12n);
});

test("amounts are shown cut, never rounded up, and exactly where asked", () => {
  assert.equal(amounts.formatAmount(1234567n * UNIT + 999_999_999_999_999_999n), "1,234,567.999999");
  assert.equal(amounts.formatAmount(5n * UNIT), "5");
  assert.equal(amounts.formatAmount(UNIT / 2n), "0.5");
  assert.equal(amounts.formatAmount(0n), "0");
  assert.equal(amounts.formatAmount(1n), "<0.000001", "dust is not shown as nothing");
  assert.equal(amounts.exactDecimal(1234n * UNIT + 1n), "1234.000000000000000001");
  assert.equal(amounts.exactDecimal(0n), "0");
  assert.equal(amounts.formatUsd(UNIT - 1n), "$0.99");
  assert.equal(amounts.formatUsd(12_345n * UNIT + UNIT / 20n), "$12,345.05");
});

test("slippage: a percentage becomes basis points and the minimum is the quote less them, rounded down", () => {
  assert.equal(amounts.parseSlippagePercent("0.5"), 50);
  assert.equal(amounts.parseSlippagePercent("0"), 0);
  assert.equal(amounts.parseSlippagePercent("100"), 10_000);
  assert.equal(amounts.parseSlippagePercent("1.25"), 125);
  assert.throws(() => amounts.parseSlippagePercent("100.01"), /from 0 to 100/);
  assert.throws(() => amounts.parseSlippagePercent("0.001"), /at most two decimals/);
  assert.throws(() => amounts.parseSlippagePercent("-1"), /percentage/);
  assert.equal(amounts.minimumAfterSlippage(10_000n, 50), 9_950n);
  assert.equal(amounts.minimumAfterSlippage(999n, 50), 994n, "994.005 rounds down");
  assert.equal(amounts.minimumAfterSlippage(999n, 0), 999n);
  assert.equal(amounts.minimumAfterSlippage(999n, 10_000), 0n);
});

test("countdowns show days, then hours, minutes and seconds, and stop at zero", () => {
  assert.equal(amounts.formatCountdown(7 * 86_400), "7 d 0:00:00");
  assert.equal(amounts.formatCountdown(7 * 86_400 - 1), "6 d 23:59:59");
  assert.equal(amounts.formatCountdown(3_725.9), "1:02:05");
  assert.equal(amounts.formatCountdown(-5), "0:00:00");
});
