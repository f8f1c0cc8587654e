// The wallet page in chain mode: a real anvil node, the contracts `gondola chain deploy` put on
// it, a real `gondola gateway` following them ([gateway.chain], with a public RPC URL for
// browsers), and a scripted upstream behind a real `gondola provider`. The page reads the
// account from the contracts and sends real transactions, signed in the page, straight to anvil;
// every amount it shows is checked against `gondola chain balance` (alloy, from node), to the
// base unit. The gateway counts the stake once it is two blocks deep, and a key minted in the
// page against it pays for a chat.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { parseAmount } from "../../crates/gateway/web/amounts.js";
import * as support from "./support.mjs";

const ADMIN_KEY = "sk-chain-operator-51d0";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const UNIT = 10n ** 18n;
const tokens = (whole) => BigInt(whole) * UNIT;
const DAY = 86_400;
const [DEPLOYER_KEY, HOLDER_KEY] = support.ANVIL_KEYS;
const HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/** anvil's third development account: the browser wallet's (anvil holds its key). */
const THIRD = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const THIRD_KEY = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

describe("the wallet page in chain mode", () => {
  let chain;
  let fixture;
  let gateway;
  let provider;
  let browser;
  let env;
  let thirdEnv;
  let deploymentFile;
  /** Every request any page of the browser made: {url, body}. */
  const requests = [];
  const cspViolations = [];

  /** The holder's figures as `gondola chain balance --json` reads them, in base units. */
  const onChain = (as = env) => {
    const figures = JSON.parse(support.chainCli(["balance", "--json"], as));
    return Object.fromEntries(Object.entries(figures).map(([name, value]) => [name, typeof value === "string" && /^[\d.]+$/.test(value) ? parseAmount(value) : value]));
  };
  const account = async () => {
    const response = await fetch(`${gateway.url}/api/v1/ledger/accounts/${HOLDER}`);
    assert.equal(response.status, 200);
    return response.json();
  };
  const nonce = async () => Number(BigInt(await chain.rpc("eth_getTransactionCount", [HOLDER, "latest"])));
  const shown = async (id) => BigInt(await browser.page.locator(`#${id}`).getAttribute("data-units"));

  const outcome = (id, act, page = browser.page) => support.walletOutcome(page, id, act);
  const refresh = () => support.refreshWallet(browser.page);

  /** Every figure the page shows is the chain's. */
  async function pageMatchesChain() {
    const figures = onChain();
    assert.equal(await shown("balance-vvv"), figures.vvv);
    assert.equal(await shown("balance-svvv"), figures.staked_svvv);
    assert.equal(await shown("balance-svvv-cooling"), figures.cooling_svvv);
    assert.equal(await shown("balance-svvv-locked"), figures.locked_svvv);
    assert.equal(await shown("balance-diem"), figures.diem);
    assert.equal(await shown("balance-diem-staked"), figures.staked_diem);
    assert.equal(await shown("balance-diem-cooling"), figures.cooling_diem);
    return figures;
  }

  before(async () => {
    chain = await support.anvil();
    const dir = support.tempDir("chain");
    const deployerKey = path.join(dir, "deployer.key");
    writeFileSync(deployerKey, `${DEPLOYER_KEY.slice(2)}\n`);
    const wallet = path.join(dir, "holder.key");
    writeFileSync(wallet, `${HOLDER_KEY.slice(2)}\n`);
    const airdrop = path.join(dir, "airdrop.csv");
    writeFileSync(airdrop, `${HOLDER},20000\n${THIRD},3000\n`);
    const proofs = path.join(dir, "proofs.json");
    const deployment = path.join(dir, "deployment.json");
    deploymentFile = deployment;
    writeFileSync(
      deployment,
      support.chainCli(["deploy", "--json", "--rpc-url", chain.url, "--key", deployerKey, "--airdrop", airdrop, "--proofs", proofs], {}),
    );
    env = { GONDOLA_RPC_URL: chain.url, GONDOLA_DEPLOYMENT: deployment, GONDOLA_WALLET: wallet };
    support.chainCli(["claim-airdrop", "--proofs", proofs], env);
    // The third account claims its airdrop in the page, with the proof the gateway serves.
    const third = path.join(dir, "third.key");
    writeFileSync(third, `${THIRD_KEY}\n`);
    thirdEnv = { ...env, GONDOLA_WALLET: third };

    fixture = await support.fixtureUpstream();
    gateway = await support.gateway(`
[gateway.ledger]
network_capacity_usd_per_day = "0"
usage_flush_ms = 20

[[gateway.keys]]
name = "operator"
kind = "admin"
sha256 = "${sha256(ADMIN_KEY)}"

[gateway.models.pricing]
fixture = { input_usd_per_million = "1", output_usd_per_million = "2" }

[gateway.chain]
rpc_url = "${chain.url}"
public_rpc_url = "${chain.url}"
deployment = "${deployment}"
airdrop_proofs = "${proofs}"
confirmations = 2
poll_ms = 100
`);
    provider = await support.upstreamProvider(gateway.url, fixture.url, "fixture");
    browser = await support.launchBrowser();
    browser.context.on("request", (request) => requests.push({ url: request.url(), body: request.postData() ?? "" }));
    browser.page.on("console", (message) => {
      if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
    });
    await support.openApp(browser.page, gateway.url);
    const { page } = browser;
    await page.getByRole("link", { name: "◈ Wallet" }).click();
    await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
    await page.getByLabel(/^Or import a private key/).fill(HOLDER_KEY);
    await page.getByRole("button", { name: "Import", exact: true }).click();
    await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
  });

  after(async () => {
    await browser?.close();
    await provider?.stop();
    await gateway?.process.stop();
    await fixture?.close();
    await chain?.stop();
    support.removeTempDirs();
  });

  test("the page reads the account from the contracts, and says where they are", async () => {
    const { page } = browser;
    assert.equal(await page.locator("#wallet-address").textContent(), HOLDER);
    const figures = await pageMatchesChain();
    assert.equal(figures.vvv, tokens(20_000), "the airdrop claimed with the CLI");
    const line = await page.locator("#wallet-chain").textContent();
    assert.match(line, new RegExp(`^On chain 31337, block \\d+: balances read from the contracts, transactions signed here and sent to ${chain.url}\\.`));
    assert.equal(Number(await page.locator("#wallet-chain").getAttribute("data-block")), Number(BigInt(await chain.rpc("eth_blockNumber"))));
  });

  test("staking approves and stakes on chain, and a refusal sends nothing", async () => {
    const { page } = browser;
    const sent = await nonce();
    await page.getByLabel("VVV to stake").fill("5000");
    const result = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
    assert.equal(result.state, "done", result.text);
    assert.match(result.text, /^Staked: 5,000 sVVV\. \(transaction 0x[0-9a-f]{8}…[0-9a-f]{4} in block \d+\)$/);
    assert.equal(await nonce(), sent + 2, "an approval and the stake");
    const receipt = await chain.rpc("eth_getTransactionReceipt", [result.transaction]);
    assert.equal(receipt.status, "0x1");
    assert.equal(receipt.from.toLowerCase(), HOLDER.toLowerCase());
    const figures = await pageMatchesChain();
    assert.equal(figures.staked_svvv, tokens(5_000));
    assert.equal(figures.vvv, tokens(15_000));

    // More than the account holds: refused in words before anything is signed.
    await page.getByLabel("VVV to stake").fill("999999");
    const refused = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click());
    assert.equal(refused.state, "error");
    assert.equal(refused.text, "This account does not have that much VVV. The chain refused it: InsufficientVvv.");
    // More free sVVV than staked: the contract's own refusal, found by simulating the call.
    await page.getByLabel(/^sVVV to unstake/).fill("7000");
    const unstake = await outcome("unstake-result", () => page.locator("#unstake-form").getByRole("button", { name: "Start unstaking" }).click());
    assert.equal(unstake.state, "error");
    assert.match(unstake.text, /^This account does not have that much free staked sVVV .* The chain refused it: InsufficientStakedVvv\.$/);
    assert.equal(await nonce(), sent + 2, "nothing sent for either refusal");
    await page.getByLabel("VVV to stake").fill("");
    await page.getByLabel(/^sVVV to unstake/).fill("");
  });

  test("minting DIEM gets exactly the contract's live quote", async () => {
    const { page } = browser;
    const field = page.getByLabel("sVVV to lock");
    await field.fill("500");
    await page.waitForSelector('#mint-quote[data-state="ready"]', { state: "attached" });
    const quoted = BigInt(await page.locator("#mint-quote").getAttribute("data-diem-units"));
    const locked = BigInt(await page.locator("#mint-quote").getAttribute("data-svvv-units"));
    assert.ok(quoted > 0n && locked <= tokens(500) && locked > tokens(499), `${quoted} DIEM for ${locked}`);
    // The rate the page shows is the contract's at the curve's current point.
    assert.match(await page.locator("#mint-quote").textContent(), /^You get [\d,.]+ DIEM for [\d,.]+ sVVV now \(90 sVVV per DIEM at the current point of the curve\)\.$/);
    assert.equal(onChain().mint_rate_svvv_per_diem, tokens(90));
    const result = await outcome("mint-result", () => page.getByRole("button", { name: "Mint DIEM" }).click());
    assert.equal(result.state, "done", result.text);
    assert.match(result.text, /^Minted [\d,.]+ DIEM for [\d,.]+ sVVV\. \(transaction 0x/);
    const figures = await pageMatchesChain();
    assert.equal(figures.diem, quoted, "minted exactly what was quoted");
    assert.equal(figures.locked_svvv, locked, "for exactly the quoted sVVV");
    assert.equal(figures.staked_svvv, tokens(5_000) - locked);
  });

  test("staked DIEM becomes the day's allowance once two blocks deep, and a key minted in the page spends it", async () => {
    const { page } = browser;
    const diem = onChain().diem;
    await page.getByRole("button", { name: "Stake all DIEM" }).click();
    const result = await outcome("diem-stake-result", () => page.locator("#diem-stake-form").getByRole("button", { name: "Stake DIEM" }).click());
    assert.equal(result.state, "done", result.text);
    assert.equal((await pageMatchesChain()).staked_diem, diem);

    // The gateway follows an account from its first key on, which needs sVVV two blocks deep
    // (the stake is; the DIEM staked a moment ago is not, so it buys no allowance yet).
    assert.match(await page.locator("#wallet-chain").textContent(), /The gateway counts this account's stake from its first API key on: mint one below once some sVVV is staked 2 blocks deep\.$/);
    const minted = await outcome("api-key-result", () => page.getByRole("button", { name: "Mint an API key" }).click());
    assert.equal(minted.state, "done", minted.text);
    const fresh = await account();
    assert.equal(fresh.chain.followed, true);
    assert.equal(BigInt(fresh.chain.svvv_units), tokens(5_000));
    assert.equal(fresh.allowance.total_usd_units_per_day, "0", "the DIEM stake is not two blocks deep");
    await refresh();
    assert.equal(await page.locator("#wallet-today").textContent(), "No API allowance today: stake DIEM (at least the minimum) or sVVV for one.");

    // Two more blocks, and the gateway counts it.
    await chain.rpc("evm_mine");
    await chain.rpc("evm_mine");
    const deadline = Date.now() + 30_000;
    let seen;
    for (;;) {
      seen = await account();
      if (BigInt(seen.allowance.total_usd_units_per_day) === diem) break;
      assert.ok(Date.now() < deadline, JSON.stringify(seen));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await refresh();
    assert.equal(BigInt(await page.locator("#wallet-today").getAttribute("data-total-units")), diem);
    assert.match(await page.locator("#wallet-chain").textContent(), /The gateway counts a stake 2 blocks deep: at block \d+ it counts 5,000 sVVV and \$[\d.]+ a day of staked DIEM\.$/);

    await page.locator("#balances-card").scrollIntoViewIfNeeded();
    await page.screenshot({ path: support.artifactPath("wallet-chain.png") });
    await outcome("api-key-result", () => page.getByRole("button", { name: "Use it for chats" }).click());
    await page.getByRole("link", { name: "Back to chat" }).click();
    await page.waitForFunction(() => document.getElementById("model-select").value === "fixture");
    await support.send(page, "Hello from the chain.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await support.replies(page).last().locator(".message-body").textContent(), "Fixture reply.");
    await page.getByRole("link", { name: "◈ Wallet" }).click();
    await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
  });

  test("unstaking runs on the chain's clock: once anvil's time passes the cooldown, withdrawing returns the VVV", async () => {
    const { page } = browser;
    await page.getByLabel(/^sVVV to unstake/).fill("1000");
    const started = await outcome("unstake-result", () => page.locator("#unstake-form").getByRole("button", { name: "Start unstaking" }).click());
    assert.equal(started.state, "done", started.text);
    assert.match(started.text, /^Cooling down: 1,000 sVVV, ready .* \(transaction 0x/);
    const figures = await pageMatchesChain();
    assert.equal(figures.cooling_svvv, tokens(1_000));
    assert.equal(Number(await page.locator("#svvv-countdown").getAttribute("data-unlock-at")), figures.svvv_unlock_at);
    assert.match(await page.locator("#svvv-countdown").textContent(), /^unlocks in (7 d 0:00:00|6 d 23:5\d:\d\d)$/);
    const withdraw = page.getByRole("button", { name: "Withdraw cooled VVV" });
    assert.equal(await withdraw.isDisabled(), true);

    await chain.rpc("evm_increaseTime", [7 * DAY]);
    await chain.rpc("evm_mine");
    await refresh();
    assert.equal(await page.locator("#svvv-countdown").textContent(), "ready to withdraw");
    assert.equal(await withdraw.isEnabled(), true);
    const withdrawn = await outcome("unstake-result", () => withdraw.click());
    assert.equal(withdrawn.state, "done", withdrawn.text);
    assert.match(withdrawn.text, /^Withdrawn: 1,000 VVV\. \(transaction 0x/);
    const after = await pageMatchesChain();
    assert.equal(after.vvv, figures.vvv + tokens(1_000));
    assert.equal(after.cooling_svvv, 0n);
  });

  test("the transactions go from the page to the chain: the key never leaves the page, and the gateway sees none", async () => {
    const needles = [HOLDER_KEY.toLowerCase(), HOLDER_KEY.slice(2).toLowerCase()];
    const toChain = requests.filter((request) => request.url.startsWith(chain.url));
    const raw = toChain.filter((request) => request.body.includes("eth_sendRawTransaction"));
    assert.equal(raw.length, 6, "approve, stake, mint, DIEM stake, unstake, withdraw");
    for (const request of requests) {
      const seen = `${request.url}\n${request.body}`;
      for (const needle of needles) assert.equal(seen.includes(needle), false, `the key in a request to ${request.url}`);
      if (request.url.startsWith(gateway.url)) assert.equal(request.body.includes("eth_"), false, `${request.url} carried a chain call`);
    }
    assert.deepEqual(cspViolations, [], "the page reaches the RPC URL under its policy, and nothing else");
    assert.deepEqual(browser.errors, []);
  });

  test("DIEM unstaked on the chain's clock, DIEM burned, and rewards claimed and staked, each a transaction read back from its event", async () => {
    const { page } = browser;
    const start = onChain();
    await page.getByLabel(/^DIEM to unstake/).fill("1");
    const cooling = await outcome("diem-unstake-result", () => page.locator("#diem-unstake-form").getByRole("button", { name: "Start unstaking" }).click());
    assert.equal(cooling.state, "done", cooling.text);
    assert.match(cooling.text, /^Cooling down: 1 DIEM, ready .* \(transaction 0x/);
    assert.equal((await pageMatchesChain()).cooling_diem, tokens(1));
    const withdraw = page.getByRole("button", { name: "Withdraw cooled DIEM" });
    assert.equal(await withdraw.isDisabled(), true);
    await chain.rpc("evm_increaseTime", [DAY]);
    await chain.rpc("evm_mine");
    await refresh();
    assert.equal(await withdraw.isEnabled(), true);
    const withdrawn = await outcome("diem-unstake-result", () => withdraw.click());
    assert.equal(withdrawn.state, "done", withdrawn.text);
    assert.match(withdrawn.text, /^Withdrawn: 1 DIEM\. \(transaction 0x/);
    assert.equal((await pageMatchesChain()).diem, start.diem + tokens(1));

    await page.getByLabel(/^DIEM to burn/).fill("0.5");
    const burned = await outcome("burn-result", () => page.getByRole("button", { name: "Burn DIEM" }).click());
    assert.equal(burned.state, "done", burned.text);
    assert.match(burned.text, /^Burned 0\.5 DIEM; [\d,.]+ sVVV unlocked\. \(transaction 0x/);
    const afterBurn = await pageMatchesChain();
    const unlocked = start.locked_svvv - afterBurn.locked_svvv;
    assert.ok(unlocked > 0n, "the burn unlocked sVVV");
    assert.equal(afterBurn.staked_svvv, start.staked_svvv + unlocked);

    // An hour of emissions, then the rewards are claimed, and an hour more, staked.
    await chain.rpc("evm_increaseTime", [3_600]);
    await chain.rpc("evm_mine");
    await refresh();
    const claimed = await outcome("claim-result", () => page.locator("#claim-rewards").click());
    assert.equal(claimed.state, "done", claimed.text);
    assert.match(claimed.text, /^Claimed [\d,.]+ VVV\. \(transaction 0x/);
    const afterClaim = await pageMatchesChain();
    assert.ok(afterClaim.vvv > afterBurn.vvv, "the rewards arrived as VVV");
    await chain.rpc("evm_increaseTime", [3_600]);
    await chain.rpc("evm_mine");
    await refresh();
    const restaked = await outcome("claim-result", () => page.getByRole("button", { name: "Claim and stake" }).click());
    assert.equal(restaked.state, "done", restaked.text);
    assert.match(restaked.text, /^Staked [\d,.]+ sVVV of rewards\. \(transaction 0x/);
    const afterStake = await pageMatchesChain();
    assert.ok(afterStake.staked_svvv > afterClaim.staked_svvv, "the rewards were staked");
    assert.equal(afterStake.vvv, afterClaim.vvv);
  });

  test("a browser wallet (EIP-1193, announced by EIP-6963) is the account: it signs and sends the page's transactions itself", async () => {
    const other = await support.launchBrowser();
    try {
      const asked = await support.injectWallet(other.context, { address: THIRD, rpcUrl: chain.url });
      const seen = [];
      other.context.on("request", (request) => seen.push(request.postData() ?? ""));
      const { page } = other;
      await support.openWalletPage(page, gateway.url);
      await support.connectBrowserWallet(page);
      assert.equal(await page.locator("#wallet-address").textContent(), THIRD);
      assert.match(await page.locator("#wallet-storage").textContent(), /^The key stays in Test Wallet: /);
      assert.equal(await page.locator("#wallet-export").isVisible(), false, "there is no key here to show");
      assert.match(await page.locator("#wallet-chain").textContent(), /balances read from the contracts, transactions signed and sent by Test Wallet\./);

      // Its airdrop, offered with the proof the gateway serves, claimed on the chain.
      assert.equal(BigInt(await page.locator("#balance-vvv").getAttribute("data-units")), 0n);
      const allocation = await (await fetch(`${gateway.url}/api/v1/chain/airdrop/${THIRD}`)).json();
      assert.equal(allocation.amount_units, tokens(3_000).toString());
      assert.equal((await fetch(`${gateway.url}/api/v1/chain/airdrop/0x${"ab".repeat(20)}`)).status, 404);
      const claim = page.getByRole("button", { name: "Claim 3,000 VVV" });
      assert.match(await page.locator("#airdrop-text").textContent(), /^The airdrop holds 3,000 VVV for this address/);
      const claimed = await outcome("airdrop-result", () => claim.click(), page);
      assert.equal(claimed.state, "done", claimed.text);
      assert.match(claimed.text, /^Claimed 3,000 VVV from the airdrop\. \(transaction 0x/);
      assert.equal(await page.locator("#airdrop-claim").isVisible(), false, "claimed once, offered no more");
      assert.equal(onChain(thirdEnv).vvv, tokens(3_000));
      assert.equal(BigInt(await page.locator("#balance-vvv").getAttribute("data-units")), tokens(3_000));

      await page.getByLabel("VVV to stake").fill("1000");
      const staked = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click(), page);
      assert.equal(staked.state, "done", staked.text);
      assert.match(staked.text, /^Staked: 1,000 sVVV\. \(transaction 0x/);
      const sent = asked.filter((request) => request.method === "eth_sendTransaction");
      assert.equal(sent.length, 3, "the claim, then the approval and the stake, each sent by the wallet");
      for (const request of sent) assert.equal(request.params[0].from.toLowerCase(), THIRD.toLowerCase());
      assert.equal(seen.filter((body) => body.includes("eth_sendRawTransaction")).length, 0, "the page signed nothing itself");
      const figures = onChain(thirdEnv);
      assert.equal(figures.staked_svvv, tokens(1_000));
      assert.equal(BigInt(await page.locator("#balance-svvv").getAttribute("data-units")), figures.staked_svvv);

      // Two blocks on top, and the wallet signs the gateway's key challenge (personal_sign).
      await chain.rpc("evm_mine");
      await chain.rpc("evm_mine");
      const minted = await outcome("api-key-result", () => page.getByRole("button", { name: "Mint an API key" }).click(), page);
      assert.equal(minted.state, "done", minted.text);
      assert.ok(asked.some((request) => request.method === "personal_sign"));

      await page.getByRole("button", { name: "Disconnect" }).click();
      await page.locator("#wallet-none").waitFor();
      assert.deepEqual(other.errors, []);
    } finally {
      await other.close();
    }
  });

  test("without a public RPC URL a key made in the page is sent to a browser wallet or the CLI, and a browser wallet reads and sends through itself", async () => {
    const quiet = await support.gateway(`
[gateway.ledger]
network_capacity_usd_per_day = "0"

[gateway.chain]
rpc_url = "${chain.url}"
deployment = "${deploymentFile}"
confirmations = 2
poll_ms = 100
`);
    const other = await support.launchBrowser();
    try {
      const config = await (await fetch(`${quiet.url}/app-config.json`)).json();
      assert.equal(config.chain.chain_id, 31337);
      assert.equal(config.chain.rpc_url, null, "the gateway's own RPC URL is never published");
      const policy = (await fetch(`${quiet.url}/`)).headers.get("content-security-policy");
      assert.match(policy, /; connect-src 'self'; /);

      const asked = await support.injectWallet(other.context, { address: THIRD, rpcUrl: chain.url });
      const urls = [];
      other.context.on("request", (request) => urls.push(request.url()));
      const { page } = other;
      await support.openWalletPage(page, quiet.url);
      await page.getByRole("button", { name: "Create a new key" }).click();
      await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
      assert.match(
        await page.locator("#wallet-chain").textContent(),
        /publishes no RPC URL for browsers, so a key made in this page cannot read or send transactions there\. A browser wallet on that chain can/,
      );
      assert.equal(await page.locator("#stake-card").isVisible(), false, "no tokens to move from here");
      await page.getByRole("button", { name: "Forget this key" }).click();
      await page.locator("#confirm-dialog").getByRole("button", { name: "Forget the key" }).click();
      await page.locator("#wallet-none").waitFor();

      await support.connectBrowserWallet(page);
      const before = onChain(thirdEnv);
      assert.equal(BigInt(await page.locator("#balance-svvv").getAttribute("data-units")), before.staked_svvv);
      await page.getByLabel("VVV to stake").fill("100");
      const staked = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click(), page);
      assert.equal(staked.state, "done", staked.text);
      assert.equal(onChain(thirdEnv).staked_svvv, before.staked_svvv + tokens(100));
      assert.ok(asked.some((request) => request.method === "eth_call"), "the page read the contracts through the wallet");
      assert.deepEqual(urls.filter((url) => url.startsWith(chain.url)), [], "and never reached the chain itself");
      assert.deepEqual(other.errors, []);
    } finally {
      await other.close();
      await quiet.process.stop();
    }
  });

  test("a browser wallet on another chain is asked onto the gateway's, and given it where the gateway publishes an RPC URL", async () => {
    // With the public RPC URL: the wallet, on Ethereum (0x1) and knowing no other chain, is
    // given anvil's (wallet_addEthereumChain with that URL), switched to it, and sends.
    const other = await support.launchBrowser();
    try {
      const asked = await support.injectWallet(other.context, { address: THIRD, rpcUrl: chain.url, onChain: { id: "0x1" } });
      const { page } = other;
      await support.openWalletPage(page, gateway.url);
      await support.connectBrowserWallet(page);
      const before = onChain(thirdEnv);
      await page.getByLabel("VVV to stake").fill("10");
      const staked = await outcome("stake-result", () => page.getByRole("button", { name: "Stake", exact: true }).click(), page);
      assert.equal(staked.state, "done", staked.text);
      assert.equal(onChain(thirdEnv).staked_svvv, before.staked_svvv + tokens(10));
      const added = asked.find((request) => request.method === "wallet_addEthereumChain");
      assert.ok(added, "the chain was offered to the wallet");
      assert.equal(added.params[0].chainId, "0x7a69");
      assert.deepEqual(added.params[0].rpcUrls, [chain.url]);
      assert.ok(asked.filter((request) => request.method === "wallet_switchEthereumChain").length >= 1);
      assert.deepEqual(other.errors, []);
    } finally {
      await other.close();
    }

    // Without one, the page cannot give the wallet the chain: it says what to do.
    const quiet = await support.gateway(`
[gateway.ledger]
network_capacity_usd_per_day = "0"

[gateway.chain]
rpc_url = "${chain.url}"
deployment = "${deploymentFile}"
`);
    const lost = await support.launchBrowser();
    try {
      await support.injectWallet(lost.context, { address: THIRD, rpcUrl: chain.url, onChain: { id: "0x1" } });
      const { page } = lost;
      await support.openWalletPage(page, quiet.url);
      await page.getByRole("button", { name: "Connect Test Wallet" }).click();
      await page.locator("#wallet-failure").waitFor();
      assert.equal(
        await page.locator("#wallet-failure").textContent(),
        "Could not read the account: Switch the browser wallet to chain 31337 (it is on another), then try again.",
      );
    } finally {
      await lost.close();
      await quiet.process.stop();
    }
  });
});
