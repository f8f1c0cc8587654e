// The wallet page against a real `gondola gateway` (with an adjustable clock, so cooldowns can
// end) and a scripted upstream behind a real `gondola provider`; the operator funds the page's
// wallet with the CLI, as a user would. Every amount the page shows is checked against the
// ledger (GET /ledger/accounts from node), to the base unit. Every request the browser makes is
// recorded, and at the end none of them carries a private key, nor does IndexedDB in plain text.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

const ADMIN_KEY = "sk-wallet-operator-77c1";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
// No shared capacity: the day's allowance is exactly the staked DIEM, in dollars.
const CONFIG = `
[gateway.ledger]
network_capacity_usd_per_day = "0"
usage_flush_ms = 20

[[gateway.keys]]
name = "operator"
kind = "admin"
sha256 = "${sha256(ADMIN_KEY)}"

[gateway.models.pricing]
fixture = { input_usd_per_million = "1", output_usd_per_million = "2" }
`;
const UNIT = 10n ** 18n;
const tokens = (whole, tenths = 0n) => BigInt(whole) * UNIT + (BigInt(tenths) * UNIT) / 10n;
const DAY = 86_400;

describe("the wallet page", () => {
  let fixture;
  let gateway;
  let provider;
  let browser;
  /** Every request any page of the browser made: {url, headers, body}. */
  const requests = [];
  const cspViolations = [];
  /** Private keys that must never leave the page. */
  const secrets = [];
  let address;
  let mintedKey;

  const api = async (route, init = {}) => {
    const response = await fetch(`${gateway.url}/api/v1${route}`, init);
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    return body;
  };
  const ledger = (who = address) => api(`/ledger/accounts/${who}`);
  const cli = (args) => support.cli(args, gateway.url, gateway.data);
  const operatorWallet = () => path.join(gateway.data, "operator.key");

  /** The exact base units behind a balance the page shows. */
  const shown = async (id) => BigInt(await browser.page.locator(`#${id}`).getAttribute("data-units"));

  const outcome = (id, act) => support.walletOutcome(browser.page, id, act);
  const refresh = () => support.refreshWallet(browser.page);

  async function openWallet() {
    const { page } = browser;
    await page.getByRole("link", { name: "◈ Wallet" }).click();
    await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
    await page.locator("#wallet-view").waitFor();
  }

  before(async () => {
    fixture = await support.fixtureUpstream();
    gateway = await support.gateway(CONFIG, ["--adjustable-clock"]);
    provider = await support.upstreamProvider(gateway.url, fixture.url, "fixture");
    browser = await support.launchBrowser();
    browser.context.on("request", async (request) => {
      const entry = { url: request.url(), headers: {}, body: request.postData() ?? "" };
      requests.push(entry);
      try {
        entry.headers = await request.allHeaders();
      } catch {
        entry.headers = request.headers();
      }
    });
    browser.page.on("console", (message) => {
      if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
    });
    await support.openApp(browser.page, gateway.url);
  });

  after(async () => {
    await browser?.close();
    await provider?.stop();
    await gateway?.process.stop();
    await fixture?.close();
    support.removeTempDirs();
  });

  test("a key made in the page is the account the ledger funds, to the unit", async () => {
    const { page } = browser;
    await openWallet();
    assert.equal(await page.locator("#wallet-unavailable").isVisible(), false, "this build has the signing library");
    await page.getByRole("button", { name: "Create a new key" }).click();
    await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
    address = await page.locator("#wallet-address").textContent();
    assert.match(address, /^0x[0-9a-fA-F]{40}$/);
    assert.match(await page.locator("#wallet-storage").textContent(), /stored in this browser only, encrypted/);
    assert.equal(await shown("balance-vvv"), 0n);

    cli(["transfer", "--wallet", operatorWallet(), "--to", address, "--vvv", "10000"]);
    await refresh();
    assert.equal(await shown("balance-vvv"), tokens(10_000));
    assert.equal(await page.locator("#balance-vvv").textContent(), "10,000");
    assert.equal(BigInt((await ledger()).vvv_units), tokens(10_000));

    // The key, shown on request only.
    assert.equal(await page.locator("#wallet-secret").isVisible(), false);
    await page.getByRole("button", { name: "Show private key" }).click();
    const secret = await page.locator("#wallet-secret-text").textContent();
    assert.match(secret, /^0x[0-9a-f]{64}$/);
    secrets.push(secret);
    await page.getByRole("button", { name: "Hide private key" }).click();
    assert.equal(await page.locator("#wallet-secret-text").textContent(), "", "the key leaves the page's text when hidden");
  });

  test("staking moves exactly the amount from VVV to sVVV", async () => {
    const { page } = browser;
    const before = await ledger();
    await page.getByLabel("VVV to stake").fill("5000");
    const result = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
    assert.equal(result.state, "done", result.text);
    assert.match(result.text, /^Staked: 5,000 sVVV\. \(ledger record \d+\)$/);
    const after = await ledger();
    assert.equal(BigInt(after.vvv_units), BigInt(before.vvv_units) - tokens(5_000));
    assert.equal(BigInt(after.staked_svvv_units), tokens(5_000));
    assert.equal(after.nonce, before.nonce + 1);
    assert.equal(await shown("balance-vvv"), tokens(5_000));
    assert.equal(await shown("balance-svvv"), tokens(5_000));
    assert.equal(await page.getByLabel("VVV to stake").inputValue(), "", "the form is cleared after success");

    // A refusal says why in words, and changes nothing.
    await page.getByLabel("VVV to stake").fill("999999");
    const refused = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
    assert.equal(refused.state, "error");
    assert.match(refused.text, /^This account does not have that much VVV\. The gateway said: “the ledger refused the operation: insufficient_vvv \(rejection 12\)”$/);
    assert.equal((await ledger()).nonce, after.nonce);
    await page.getByLabel("VVV to stake").fill("12abc");
    const typo = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
    assert.equal(typo.state, "error");
    assert.match(typo.text, /^VVV to stake: “12abc” is not an amount/);
    await page.getByLabel("VVV to stake").fill("");
  });

  test("minting DIEM gets exactly the live quote the page showed", async () => {
    const { page } = browser;
    const field = page.getByLabel("sVVV to lock");
    await field.fill("9");
    await field.fill("900");
    await page.waitForSelector('#mint-quote[data-state="ready"]', { state: "attached" });
    const quoted = BigInt(await page.locator("#mint-quote").getAttribute("data-diem-units"));
    const expected = await api(`/ledger/quote?svvv_units=${tokens(900)}`);
    assert.equal(quoted, BigInt(expected.diem_units), "the quote is the gateway's, for the amount typed last");
    const locked = BigInt(await page.locator("#mint-quote").getAttribute("data-svvv-units"));
    assert.equal(locked, BigInt(expected.svvv_units));
    assert.ok(locked <= tokens(900) && locked > tokens(899), "the DIEM costs (nearly) the whole budget");
    assert.match(await page.locator("#mint-quote").textContent(), /^You get [\d,.]+ DIEM for [\d,.]+ sVVV now \([\d,.]+ sVVV per DIEM/);
    // The default slippage (0.5%) becomes the minimum, rounded down as the CLI does.
    assert.equal(BigInt(await page.locator("#mint-minimum").getAttribute("data-units")), (quoted * 9_950n) / 10_000n);

    const result = await outcome("mint-result", () => page.getByRole("button", { name: "Mint DIEM" }).click());
    assert.equal(result.state, "done", result.text);
    assert.match(result.text, /^Minted [\d,.]+ DIEM for [\d,.]+ sVVV\./);
    const account = await ledger();
    assert.equal(BigInt(account.diem_units), quoted, "minted exactly what was quoted");
    assert.equal(BigInt(account.locked_svvv_units), locked, "for exactly the quoted sVVV");
    assert.equal(BigInt(account.staked_svvv_units), tokens(5_000) - locked);
    assert.equal(await shown("balance-diem"), quoted);
    assert.equal(await shown("balance-svvv-locked"), locked);
    assert.equal(await shown("balance-svvv"), tokens(5_000) - locked);
  });

  test("slippage guard: a price that moved past the tolerance is refused, clearly, and nothing changes", async () => {
    const { page } = browser;
    await page.getByLabel("Slippage tolerance (%)").fill("0");
    await page.getByLabel("sVVV to lock").fill("100");
    await page.waitForSelector('#mint-quote[data-state="ready"]', { state: "attached" });
    const quoted = BigInt(await page.locator("#mint-quote").getAttribute("data-diem-units"));
    assert.equal(BigInt(await page.locator("#mint-minimum").getAttribute("data-units")), quoted, "0% slippage: the minimum is the quote");

    // Someone else mints a lot: the curve's price rises before the page's mint arrives.
    const other = path.join(support.tempDir("wallet"), "other.key");
    const otherAddress = cli(["wallet", "new", "--wallet", other]).address;
    cli(["transfer", "--wallet", operatorWallet(), "--to", otherAddress, "--vvv", "50000"]);
    cli(["stake", "--wallet", other, "50000"]);
    cli(["diem", "mint", "--wallet", other, "40000"]);
    const requote = await api(`/ledger/quote?svvv_units=${tokens(100)}`);
    assert.ok(BigInt(requote.diem_units) < quoted, "the other mint moved the price");

    const before = await ledger();
    const result = await outcome("mint-result", () => page.getByRole("button", { name: "Mint DIEM" }).click());
    assert.equal(result.state, "error");
    assert.equal(await page.locator("#mint-result").getAttribute("data-rejection"), "slippage_exceeded");
    assert.match(result.text, /^Refused: the price moved since your quote, and the mint curve now gives fewer DIEM than your minimum of [\d,.]+\. Nothing was minted and no sVVV was locked\./);
    const after = await ledger();
    for (const field of ["nonce", "vvv_units", "staked_svvv_units", "locked_svvv_units", "diem_units", "staked_diem_units"]) {
      assert.deepEqual(after[field], before[field], `${field} is unchanged`);
    }
    // The page asks for the new price at once; minting again accepts it.
    await page.waitForFunction((old) => document.getElementById("mint-quote").dataset.diemUnits && document.getElementById("mint-quote").dataset.diemUnits !== old, quoted.toString());
    assert.equal(BigInt(await page.locator("#mint-quote").getAttribute("data-diem-units")), BigInt(requote.diem_units));
    await page.getByLabel("sVVV to lock").fill("");
    await page.getByLabel("Slippage tolerance (%)").fill("0.5");
  });

  test("staked DIEM is today's allowance; burning DIEM unlocks sVVV in proportion", async () => {
    const { page } = browser;
    const before = await ledger();
    await page.getByLabel(/^DIEM to stake/).fill("1");
    const staked = await outcome("diem-stake-result", () => page.getByRole("button", { name: "Stake DIEM" }).click());
    assert.equal(staked.state, "done", staked.text);
    const account = await ledger();
    assert.equal(BigInt(account.staked_diem_units), tokens(1));
    assert.equal(BigInt(account.diem_units), BigInt(before.diem_units) - tokens(1));
    assert.equal(BigInt(account.allowance.total_usd_units_per_day), tokens(1), "one staked DIEM is a dollar a day");
    assert.equal(await shown("balance-diem-staked"), tokens(1));
    assert.equal(await page.locator("#wallet-today").textContent(), "API allowance: $1.00 left of $1.00 today ($0.00 spent).");

    await page.getByLabel(/^DIEM to burn/).fill("0.5");
    const burned = await outcome("burn-result", () => page.getByRole("button", { name: "Burn DIEM" }).click());
    assert.equal(burned.state, "done", burned.text);
    assert.match(burned.text, /^Burned 0\.5 DIEM; [\d,.]+ sVVV unlocked\./);
    const afterBurn = await ledger();
    assert.equal(BigInt(afterBurn.diem_units), BigInt(account.diem_units) - tokens(0, 5));
    const unlocked = BigInt(account.locked_svvv_units) - BigInt(afterBurn.locked_svvv_units);
    assert.ok(unlocked > 0n);
    assert.equal(BigInt(afterBurn.staked_svvv_units), BigInt(account.staked_svvv_units) + unlocked);
    assert.equal(await shown("balance-svvv-locked"), BigInt(afterBurn.locked_svvv_units));
    assert.equal(await shown("balance-diem"), BigInt(afterBurn.diem_units));
  });

  test("unstaking shows a live cooldown; once it ends, withdrawing returns the VVV; rewards can be claimed and staked", async () => {
    const { page } = browser;
    const before = await ledger();
    await page.getByLabel(/^sVVV to unstake/).fill("1000");
    const started = await outcome("unstake-result", () => page.locator("#unstake-form").getByRole("button", { name: "Start unstaking" }).click());
    assert.equal(started.state, "done", started.text);
    assert.match(started.text, /^Cooling down: 1,000 sVVV, ready /);
    await page.getByLabel(/^DIEM to unstake/).fill("0.25");
    const diemStarted = await outcome("diem-unstake-result", () => page.locator("#diem-unstake-form").getByRole("button", { name: "Start unstaking" }).click());
    assert.equal(diemStarted.state, "done", diemStarted.text);

    const cooling = await ledger();
    assert.equal(BigInt(cooling.cooling_svvv_units), tokens(1_000));
    assert.equal(BigInt(cooling.staked_svvv_units), BigInt(before.staked_svvv_units) - tokens(1_000));
    assert.equal(await shown("balance-svvv-cooling"), tokens(1_000));
    assert.equal(await shown("balance-diem-cooling"), tokens(0) + UNIT / 4n);
    const countdown = page.locator("#svvv-countdown");
    assert.equal(Number(await countdown.getAttribute("data-unlock-at")), cooling.svvv_unlock_at);
    const first = await countdown.textContent();
    // The gateway's clock has whole seconds: just after the unstake, a full week may be left.
    assert.match(first, /^unlocks in (7 d 0:00:00|6 d 23:59:\d\d)$/, "seven days, counted down");
    assert.match(await page.locator("#diem-countdown").textContent(), /^unlocks in (1 d 0:00:00|23:59:\d\d)$/);
    await page.waitForFunction((first) => document.getElementById("svvv-countdown").textContent !== first, first);
    assert.match(await countdown.textContent(), /^unlocks in 6 d 23:5\d:\d\d$/, "the countdown runs");
    assert.equal(await page.getByRole("button", { name: "Withdraw cooled VVV" }).isDisabled(), true);
    await page.locator("#balances-card").scrollIntoViewIfNeeded();
    await page.screenshot({ path: support.artifactPath("wallet-cooldown.png") });

    // The operator moves the gateway's clock past the cooldown; the page reads the new time.
    await api("/admin/clock", {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ advance_seconds: 7 * DAY + 60 }),
    });
    await refresh();
    assert.equal(await countdown.textContent(), "ready to withdraw");
    const withdraw = page.getByRole("button", { name: "Withdraw cooled VVV" });
    assert.equal(await withdraw.isEnabled(), true);
    const vvvBefore = BigInt((await ledger()).vvv_units);
    const withdrawn = await outcome("unstake-result", () => withdraw.click());
    assert.equal(withdrawn.state, "done", withdrawn.text);
    assert.match(withdrawn.text, /^Withdrawn: 1,000 VVV\./);
    const after = await ledger();
    assert.equal(BigInt(after.vvv_units), vvvBefore + tokens(1_000));
    assert.equal(BigInt(after.cooling_svvv_units), 0n);
    assert.equal(await shown("balance-svvv-cooling"), 0n);
    assert.equal(await countdown.textContent(), "");
    assert.equal(await withdraw.isDisabled(), true, "nothing left to withdraw");

    const diemWithdrawn = await outcome("diem-unstake-result", () => page.getByRole("button", { name: "Withdraw cooled DIEM" }).click());
    assert.equal(diemWithdrawn.state, "done", diemWithdrawn.text);
    assert.match(diemWithdrawn.text, /^Withdrawn: 0\.25 DIEM\./);

    // A week of emissions to the only staker: claim them and stake them in one operation.
    const owed = await ledger();
    assert.ok(BigInt(owed.pending_rewards_units) > 0n, "a week of staking earned rewards");
    assert.ok((await shown("balance-rewards")) > 0n);
    const claimed = await outcome("claim-result", () => page.getByRole("button", { name: "Claim and stake" }).click());
    assert.equal(claimed.state, "done", claimed.text);
    const restaked = await ledger();
    const gained = BigInt(restaked.staked_svvv_units) - BigInt(owed.staked_svvv_units);
    assert.ok(gained >= BigInt(owed.pending_rewards_units), "everything owed (and what accrued since) was staked");
    assert.equal(await shown("balance-svvv"), BigInt(restaked.staked_svvv_units));
  });

  test("an API key minted in the page pays for chats from this account", async () => {
    const { page } = browser;
    const minted = await outcome("api-key-result", () => page.getByRole("button", { name: "Mint an API key" }).click());
    assert.equal(minted.state, "done", minted.text);
    mintedKey = await page.locator("#minted-key-text").textContent();
    assert.ok(mintedKey.length > 20, mintedKey);
    assert.ok(minted.text.includes(mintedKey.slice(-6)), minted.text);
    const used = await outcome("api-key-result", () => page.getByRole("button", { name: "Use it for chats" }).click());
    assert.equal(used.text, "Chats now use this key (saved in Settings).");

    // The gateway has keys configured: without one, chats would be refused.
    await page.getByRole("link", { name: "Back to chat" }).click();
    await page.locator("#main").waitFor();
    assert.equal(await page.locator("#wallet-view").isVisible(), false);
    await page.waitForFunction(() => document.getElementById("model-select").value === "fixture");
    await support.send(page, "Hello from my wallet.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await support.replies(page).last().locator(".message-body").textContent(), "Fixture reply.");
    // The balance the gateway sends with the reply: the allowance less what this request holds.
    assert.match(await page.locator("#account").textContent(), /^Balance 0\.\d\d DIEM · \$0\.00 · \d+ of \d+ requests left this minute$/);
    const chat = requests.find((request) => request.url.endsWith("/v1/chat/completions"));
    assert.equal(chat.headers.authorization, `Bearer ${mintedKey}`);

    // Today's usage reaches the ledger within the flush interval; the wallet page shows it.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const history = await api("/billing/usage-days", { headers: { authorization: `Bearer ${mintedKey}` } });
      if (history.data.some((day) => day.requests === 1)) break;
      assert.ok(Date.now() < deadline, JSON.stringify(history));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await openWallet();
    await refresh();
    assert.match(await page.locator("#wallet-usage").textContent(), /^Today with this page's API key: 1 request, \d+ tokens/);
    const account = await ledger();
    assert.ok(BigInt(account.allowance.remaining_usd_units) < tokens(1), "the chat was paid from the allowance");
    assert.equal(BigInt(await page.locator("#wallet-today").getAttribute("data-remaining-units")), BigInt(account.allowance.remaining_usd_units));
  });

  test("screenshots: the wallet on a phone, light and dark, and on a desktop", async () => {
    const { page } = browser;
    await page.locator("#key-card").scrollIntoViewIfNeeded();
    await page.screenshot({ path: support.artifactPath("wallet-desktop.png") });
    // Without motion, the sidebar is off the screen at once, not sliding away in the shot.
    await page.emulateMedia({ reducedMotion: "reduce" });
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const scheme of ["light", "dark"]) {
        await page.emulateMedia({ colorScheme: scheme });
        await page.locator("#key-card").scrollIntoViewIfNeeded();
        assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), true, "no sideways scrolling on a phone");
        await page.screenshot({ path: support.artifactPath(`wallet-phone-${scheme}.png`) });
        await page.locator("#diem-card").scrollIntoViewIfNeeded();
        await page.screenshot({ path: support.artifactPath(`wallet-phone-${scheme}-diem.png`) });
      }
      // On a phone the sidebar is reachable from the wallet page.
      await page.getByRole("button", { name: "Show conversations" }).click();
      await page.getByRole("button", { name: "+ New chat" }).waitFor();
      await page.getByRole("link", { name: "◈ Wallet" }).click();
    } finally {
      await page.emulateMedia({ colorScheme: null, reducedMotion: null });
      await page.setViewportSize({ width: 1280, height: 820 });
    }
  });

  test("a key made with the CLI, imported into the page, is the CLI's account, and stays after a reload", async () => {
    const { page } = browser;
    const file = path.join(support.tempDir("wallet"), "imported.key");
    const cliAddress = cli(["wallet", "new", "--wallet", file]).address;
    const exported = support.cliText(["wallet", "export", "--wallet", file], gateway.url, gateway.data);
    assert.match(exported, /^0x[0-9a-f]{64}$/);
    secrets.push(exported);

    await page.getByRole("button", { name: "Forget this key" }).click();
    await page.locator("#confirm-dialog").getByRole("button", { name: "Forget the key" }).click();
    await page.locator("#wallet-none").waitFor();
    const stored = await support.inspectIndexedDb(page);
    assert.equal(stored.gondola.wallet.length, 0, "forgotten means deleted");

    await page.getByLabel(/^Or import a private key/).fill("0x1234");
    await page.getByRole("button", { name: "Import", exact: true }).click();
    assert.match(await page.locator("#wallet-key-error").textContent(), /64 hex digits/);
    await page.getByLabel(/^Or import a private key/).fill(exported);
    await page.getByRole("button", { name: "Import", exact: true }).click();
    await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
    assert.equal((await page.locator("#wallet-address").textContent()).toLowerCase(), cliAddress);
    assert.equal(await page.getByLabel(/^Or import a private key/).inputValue(), "", "the field does not keep the key");

    await page.reload();
    await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
    assert.equal((await page.locator("#wallet-address").textContent()).toLowerCase(), cliAddress, "the key was stored and reads back");
    assert.equal(await page.title(), "Wallet · Gondola");
  });

  test("the private keys never leave the page, and IndexedDB holds them only encrypted", async () => {
    const { page } = browser;
    assert.equal(secrets.length, 2);
    const needles = secrets.flatMap((secret) => [secret.toLowerCase(), secret.slice(2).toLowerCase(), secret.slice(2).toUpperCase()]);
    assert.ok(requests.length > 30, `recorded ${requests.length} requests`);
    assert.ok(requests.some((request) => request.url.endsWith("/ledger/operations") && request.body.includes('"signature"')), "operations were sent");
    for (const request of requests) {
      const seen = [request.url, JSON.stringify(request.headers), request.body].join("\n");
      for (const needle of needles) assert.equal(seen.includes(needle), false, `a private key in a request to ${request.url}`);
    }
    for (const secret of secrets) {
      const stored = await support.inspectIndexedDb(page, secret.slice(2));
      for (const [name, records] of Object.entries(stored.gondola)) {
        for (const record of records) assert.equal(record.containsNeedle, false, `${name}/${record.id} holds a key in plain text`);
      }
      assert.equal(stored.gondola.wallet.length, 1);
      assert.deepEqual(stored.gondola.wallet[0].fields, ["data", "id", "iv"]);
    }
    const webStorage = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    for (const needle of needles) assert.equal(webStorage.includes(needle), false);
    assert.deepEqual(cspViolations, [], "the signing library runs under the strict CSP");
    assert.deepEqual(browser.errors, []);
  });

  test("a key not remembered is kept in memory only and gone after a reload", async () => {
    const other = await support.launchBrowser();
    try {
      await support.openApp(other.page, `${gateway.url}/#wallet`);
      await other.page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
      await other.page.getByLabel(/Remember the key in this browser/).uncheck();
      await other.page.getByRole("button", { name: "Create a new key" }).click();
      await other.page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
      assert.match(await other.page.locator("#wallet-storage").textContent(), /kept in memory only/);
      const stored = await support.inspectIndexedDb(other.page);
      assert.equal(stored.gondola.wallet.length, 0);
      await other.page.reload();
      await other.page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
      await other.page.getByRole("button", { name: "Create a new key" }).waitFor();
      assert.equal(await other.page.locator("#wallet-some").isVisible(), false);
    } finally {
      await other.close();
    }
  });

  test("a browser wallet (EIP-1193) is the account: it signs the ledger's operations (EIP-712) and the key challenge itself", async () => {
    // anvil here is only the wallet's signer: it holds the key of its fourth development account.
    const signer = await support.anvil();
    const other = await support.launchBrowser();
    try {
      const wallet = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";
      const asked = await support.injectWallet(other.context, { address: wallet, rpcUrl: signer.url, name: "Anvil Wallet" });
      const { page } = other;
      await support.openWalletPage(page, gateway.url);
      await support.connectBrowserWallet(page, "Anvil Wallet");
      assert.equal(await page.locator("#wallet-address").textContent(), wallet);
      cli(["transfer", "--wallet", operatorWallet(), "--to", wallet, "--vvv", "100"]);

      await page.getByLabel("VVV to stake").fill("100");
      const result = await support.walletOutcome(page, "stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
      assert.equal(result.state, "done", result.text);
      assert.match(result.text, /^Staked: 100 sVVV\. \(ledger record \d+\)$/);
      assert.equal(BigInt((await ledger(wallet.toLowerCase())).staked_svvv_units), tokens(100));
      const typed = asked.filter((request) => request.method === "eth_signTypedData_v4");
      assert.equal(typed.length, 1);
      assert.equal(typed[0].params[0].toLowerCase(), wallet.toLowerCase());
      // What the wallet was shown: the operation as its EIP-712 struct, in the gateway's domain.
      const shownToWallet = JSON.parse(typed[0].params[1]);
      assert.equal(shownToWallet.primaryType, "Stake");
      assert.equal(shownToWallet.message.vvv, tokens(100).toString());
      assert.equal(shownToWallet.domain.salt, (await api("/ledger/status")).eip712_domain.salt);

      const minted = await support.walletOutcome(page, "api-key-result", () => page.getByRole("button", { name: "Mint an API key" }).click());
      assert.equal(minted.state, "done", minted.text);
      assert.ok(asked.some((request) => request.method === "personal_sign"));

      // Remembered (the default): after a reload the page takes the wallet up again, asking
      // only which accounts it already shares (no new approval). What it keeps is encrypted.
      const approvals = () => asked.filter((request) => request.method === "eth_requestAccounts").length;
      const approved = approvals();
      await page.reload();
      await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
      assert.equal(await page.locator("#wallet-address").textContent(), wallet);
      assert.match(await page.locator("#wallet-storage").textContent(), /The page reconnects to it when it opens\.$/);
      assert.equal(approvals(), approved, "no new approval was asked for");
      assert.ok(asked.some((request) => request.method === "eth_accounts"));
      const stored = await support.inspectIndexedDb(page, wallet.slice(2));
      assert.equal(stored.gondola.wallet.length, 1);
      assert.equal(stored.gondola.wallet[0].containsNeedle, false, "the address is not kept in plain text");
      await page.getByRole("button", { name: "Disconnect" }).click();
      await page.locator("#wallet-none").waitFor();
      await page.reload();
      await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
      await page.getByRole("button", { name: "Connect Anvil Wallet" }).waitFor();
      assert.equal(await page.locator("#wallet-some").isVisible(), false, "disconnected is forgotten");
      assert.deepEqual(other.errors, []);
    } finally {
      await other.close();
      await signer.stop();
    }
  });
});
