// What the web app tells people when something goes wrong, against a real `gondola gateway`
// configured with API keys and a scripted upstream behind a real `gondola provider`: 401 (no
// key, a wrong key, then the right one), 429 (a key's rate limit spent), 503 (a configured
// model nobody serves), 402 (an account API key, minted with a wallet signature through the CLI,
// whose account stakes but has no allowance), a reply cut off mid-stream, and a gateway that is
// gone.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

const GOOD_KEY = "sk-browser-good-2d1f";
const TINY_KEY = "sk-browser-tiny-93ab";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const CONFIG = `
[gateway.ledger]
network_capacity_usd_per_day = "0"

[[gateway.keys]]
name = "good"
sha256 = "${sha256(GOOD_KEY)}"

[[gateway.keys]]
name = "tiny"
sha256 = "${sha256(TINY_KEY)}"
requests_per_minute = 1

[gateway.models.pricing]
offline-model = { input_usd_per_million = "1", output_usd_per_million = "2" }
fixture = { input_usd_per_million = "1", output_usd_per_million = "2" }
`;

async function saveKey(page, key) {
  const dialog = page.locator("#settings-dialog");
  if (!(await dialog.isVisible())) await page.getByRole("button", { name: "Settings", exact: true }).click();
  await dialog.getByLabel(/^API key/).fill(key);
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "hidden" });
}

function lastError(page) {
  return support.replies(page).last().locator(".message-error");
}

describe("errors, in words people understand", () => {
  let fixture;
  let gateway;
  let provider;
  let browser;

  before(async () => {
    fixture = await support.fixtureUpstream();
    gateway = await support.gateway(CONFIG);
    provider = await support.upstreamProvider(gateway.url, fixture.url, "fixture");
    browser = await support.launchBrowser();
    await support.openApp(browser.page, gateway.url);
  });

  after(async () => {
    await browser?.close();
    await provider?.stop();
    await gateway?.process.stop();
    await fixture?.close();
    support.removeTempDirs();
  });

  test("401: the app asks for a key, says when it is wrong, and works once the right one is saved", async () => {
    const { page } = browser;
    await page.locator("#banner").getByText("API key needed").waitFor();
    assert.equal(await page.locator("#model-select").isDisabled(), true);
    assert.equal(await page.locator("#model-select").textContent(), "No models available");
    await support.send(page, "Hello.");
    assert.equal(await support.lastReplyFinished(page), "error");
    assert.equal(await lastError(page).locator("strong").textContent(), "API key needed");
    await page.screenshot({ path: support.artifactPath("error-401.png") });

    await lastError(page).getByRole("button", { name: "Open settings" }).click();
    await saveKey(page, "sk-wrong");
    await page.locator("#banner").getByText("API key not accepted").waitFor();

    await saveKey(page, GOOD_KEY);
    await page.locator("#banner").waitFor({ state: "hidden" });
    // The banner goes as soon as the key is accepted; the model list fills in after.
    await page.locator('#model-select option[value="offline-model"]').waitFor({ state: "attached" });
    assert.deepEqual(await page.locator("#model-select option").evaluateAll((options) => options.map((o) => o.value)), ["fixture", "offline-model"]);
    await support.replies(page).last().getByRole("button", { name: "Regenerate" }).click();
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await support.replies(page).last().locator(".message-body").textContent(), "Fixture reply.");
    assert.equal(await page.locator("#account").textContent(), "599 of 600 requests left this minute");
    await support.writesSettled(page);
    const stored = await support.inspectIndexedDb(page, GOOD_KEY);
    assert.equal(stored.gondola.prefs.length, 1);
    assert.equal(stored.gondola.prefs[0].containsNeedle, false, "the key is stored encrypted");
  });

  test("429: a spent rate limit says to wait", async () => {
    const { page } = browser;
    await saveKey(page, TINY_KEY);
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.send(page, "One.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await page.locator("#account").textContent(), "0 of 1 requests left this minute");
    await support.send(page, "Two.");
    assert.equal(await support.lastReplyFinished(page), "error");
    assert.equal(await lastError(page).locator("strong").textContent(), "Too many requests");
    assert.match(await lastError(page).locator("p").textContent(), /rate limit\. Try again in \d+ s\./);
    await saveKey(page, GOOD_KEY);
  });

  test("503: a model that no provider serves is marked offline and says so", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await page.locator("#model-select").selectOption("offline-model");
    assert.equal(await page.locator("#model-select option:checked").textContent(), "offline-model — offline");
    assert.ok((await page.locator("#model-summary .chip").allTextContents()).includes("Offline"));
    await support.send(page, "Anyone there?");
    assert.equal(await support.lastReplyFinished(page), "error");
    assert.equal(await lastError(page).locator("strong").textContent(), "Model unavailable");
    assert.match(await lastError(page).locator("p").textContent(), /no provider is serving offline-model right now/);
    await page.locator("#model-select").selectOption("fixture");
  });

  test("402: an account key whose account has nothing to spend reads as insufficient balance, with the balances shown", async () => {
    const { page } = browser;
    // A wallet funded by the operator stakes sVVV (enough to mint a key) but holds no DIEM, and
    // the network's shared capacity is zero: its key is good, its allowance is nothing.
    const wallet = path.join(support.tempDir("wallet"), "user.key");
    const user = support.cli(["wallet", "new", "--wallet", wallet], gateway.url, gateway.data).address;
    const operator = path.join(gateway.data, "operator.key");
    support.cli(["transfer", "--wallet", operator, "--to", user, "--vvv", "100"], gateway.url, gateway.data);
    support.cli(["stake", "--wallet", wallet, "100"], gateway.url, gateway.data);
    const key = support.cli(["key", "--wallet", wallet], gateway.url, gateway.data).data.apiKey;
    await saveKey(page, key);
    try {
      await page.getByRole("button", { name: "+ New chat" }).click();
      await support.send(page, "Expensive question.");
      assert.equal(await support.lastReplyFinished(page), "error");
      assert.equal(await lastError(page).locator("strong").textContent(), "Insufficient balance");
      assert.match(await lastError(page).locator("p").textContent(), /Top up your DIEM or USD balance/);
      assert.match(await page.locator("#account").textContent(), /^Balance 0\.00 DIEM · \$0\.00 · \d+ of \d+ requests left this minute$/);
      await page.screenshot({ path: support.artifactPath("error-insufficient-balance.png") });
    } finally {
      await saveKey(page, GOOD_KEY);
    }
  });

  test("a reply cut off mid-stream keeps its text and says it was cut short", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.send(page, "Please break.");
    assert.equal(await support.lastReplyFinished(page), "error");
    const reply = support.replies(page).last();
    assert.equal(await reply.locator(".message-body").textContent(), "Half an ans");
    assert.equal(await lastError(page).locator("strong").textContent(), "The reply was cut short");
    assert.match(await lastError(page).locator("p").textContent(), /provider/);
  });

  test("a gateway that is gone: the reply says the gateway cannot be reached", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.send(page, "Still there?");
    assert.equal(await support.lastReplyFinished(page), "done");
    await gateway.process.stop();
    await support.send(page, "Hello?");
    assert.equal(await support.lastReplyFinished(page), "error");
    assert.equal(await lastError(page).locator("strong").textContent(), "Can't reach the gateway");
    assert.match(await lastError(page).locator("p").textContent(), /is not answering\. Check that it is running/);
    await page.screenshot({ path: support.artifactPath("error-gateway-down.png") });
  });
});
