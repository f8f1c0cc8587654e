// The private mode with the real `gondola serve`, its real model, a real `gondola relay` and an
// account's API key: the page seals each chat itself (to the provider, and around that to the
// gateway), sends it through the relay, pays with Privacy Pass tokens it bought with the key, and
// checks the provider's receipt. The gateway offers an X-Wing key too, so the page seals to the
// gateway with X-Wing and to the provider with X25519: both KEMs run in the browser. What each
// party saw is read from the browser's own record of its requests and from the gateway's and
// relay's logs.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

describe("the private mode: sealed in the page, through a relay, paid with tokens", () => {
  const canary = `canary-${randomUUID()}`;
  let gondola;
  let relay;
  let relayOrigin;
  let apiKey;
  let browser;
  /** Every request the browser made: {url, method, headers, body (bytes)}. */
  const requests = [];
  const cspViolations = [];

  before(async () => {
    support.pullModel();
    const relayPort = await support.freePort();
    relayOrigin = `http://127.0.0.1:${relayPort}`;
    gondola = await support.serve({
      config: `[gateway]\nrelays = ["${relayOrigin}"]\nx_wing = true\n\n[gateway.models]\ndefault = "smollm2-135m-instruct"\n`,
    });
    relay = await support.relay(gondola.url, `127.0.0.1:${relayPort}`);
    assert.equal(relay.url, relayOrigin);

    // An account's key: staked VVV gives it a daily allowance, which it spends as tokens.
    const cli = (args) => support.cli(args, gondola.url, gondola.data);
    const wallet = `${support.tempDir("wallet")}/user.key`;
    const address = cli(["wallet", "new", "--wallet", wallet]).address;
    cli(["transfer", "--wallet", `${gondola.data}/operator.key`, "--to", address, "--vvv", "100"]);
    cli(["stake", "--wallet", wallet, "100"]);
    apiKey = cli(["key", "--wallet", wallet]).data.apiKey;

    browser = await support.launchBrowser();
    browser.context.on("request", async (request) => {
      const entry = { url: request.url(), method: request.method(), headers: request.headers(), body: request.postDataBuffer() ?? Buffer.alloc(0) };
      requests.push(entry);
      try {
        entry.headers = await request.allHeaders();
      } catch {
        // The request is gone; its basic headers are kept.
      }
    });
    browser.page.on("console", (message) => {
      if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
    });
  });

  after(async () => {
    await browser?.close();
    await relay?.process.stop();
    await gondola?.process.stop();
    support.removeTempDirs();
  });

  test("a chat sealed in the page reaches the provider through the relay, paid with tokens, and its receipt verifies", async () => {
    const { page } = browser;
    await support.openApp(page, gondola.url);
    assert.equal(await page.locator("#private-badge").isHidden(), true);
    await page.getByRole("button", { name: "Settings", exact: true }).click();
    await page.locator("#api-key").fill(apiKey);
    assert.deepEqual(await page.locator("#private-relay option").evaluateAll((options) => options.map((o) => o.value)), [relayOrigin]);
    await page.locator("#private-mode").check();
    await page.locator("#settings-save").click();
    await page.locator("#private-badge").waitFor();
    await support.chatSettings(page, { maxTokens: 24, temperature: 0 });

    const sentFrom = requests.length;
    await support.send(page, `Repeat after me: ${canary}`);
    assert.equal(await support.lastReplyFinished(page), "done");
    const reply = support.replies(page).last();
    assert.ok((await reply.locator(".message-body").textContent()).trim().length > 0);
    assert.equal(await reply.locator('[data-field="privacy"]').textContent(), "sealed · receipt verified");
    const provider = await reply.locator('[data-field="provider"]').textContent();
    assert.match(provider, /^pv-[0-9a-f]+$/);
    const detail = await reply.locator('[data-field="privacy"]').getAttribute("title");
    assert.match(detail, new RegExp(`Sealed to ${provider} and sent through ${relayOrigin}`));
    assert.match(detail, /request \(SHA-256 [0-9a-f]{64}\) and this reply \(SHA-256 [0-9a-f]{64}\), smollm2-135m-instruct Q4_1/);
    const tokens = await reply.locator('[data-field="tokens"]').textContent();
    assert.match(tokens, /^\d+ prompt · \d+ completion tokens$/);
    await page.screenshot({ path: support.artifactPath("private-mode.png") });

    // The browser's view: every request of the chat went to the relay, sealed; nothing it sent
    // held the prompt or the key where a relay or gateway could read them.
    const sent = requests.slice(sentFrom);
    const posts = sent.filter((request) => request.method === "POST");
    assert.ok(posts.length >= 2, `tokens, the provider list or the chat went out: ${posts.map((r) => r.url)}`);
    for (const request of posts) {
      assert.equal(request.url, `${relayOrigin}/ohttp`);
      assert.equal(request.headers["content-type"], "message/ohttp-chunked-req");
      // Sealed to the gateway's X-Wing key (id 2, KEM 0x647a), the first it lists.
      assert.deepEqual([...request.body.subarray(0, 3)], [2, 0x64, 0x7a]);
      assert.equal(request.headers.authorization, undefined);
      assert.equal(request.headers.cookie, undefined);
    }
    assert.ok(!sent.some((request) => request.url.startsWith(gondola.url) && request.url.includes("/chat/completions")), "no chat went to the gateway directly");
    for (const request of requests) {
      assert.ok(!request.body.includes(canary), `${request.url} carried the prompt in the clear`);
      assert.ok(!request.body.includes(apiKey), `${request.url} carried the API key in the clear`);
    }

    // The gateway's view: a sealed chat paid with tokens; never the prompt or the key.
    const gatewayLog = gondola.process.stderr();
    const sealed = gatewayLog.split("\n").filter((line) => line.includes("sealed chat completion"));
    assert.equal(sealed.length, 1, gatewayLog);
    assert.match(sealed[0], /paid_with="tokens"/);
    assert.match(sealed[0], new RegExp(`provider=${provider}`));
    assert.ok(!gatewayLog.includes(canary), "the gateway's log holds the prompt");
    assert.ok(!gatewayLog.includes(apiKey), "the gateway's log holds the key");
    // The relay's view: sizes and statuses, nothing it carried.
    const relayLog = relay.process.stderr();
    assert.match(relayLog, /relayed/);
    assert.ok(!relayLog.includes(canary) && !relayLog.includes(apiKey));
    assert.deepEqual(cspViolations, []);
  });

  test("a reply tampered with on its way is refused in words, and the next one is fine", async () => {
    const { page } = browser;
    // One reply from the relay, with one bit flipped near its end.
    await page.route(
      `${relayOrigin}/ohttp`,
      async (route) => {
        const response = await route.fetch();
        const body = Buffer.from(await response.body());
        body[body.length - 5] ^= 1;
        await route.fulfill({ response, body });
      },
      { times: 1 },
    );
    await support.send(page, "Say hello.");
    assert.equal(await support.lastReplyFinished(page), "error");
    const error = support.replies(page).last().locator(".message-error");
    assert.match(await error.textContent(), /could not be decrypted: it was tampered with or cut short/);

    await support.replies(page).last().getByRole("button", { name: "Regenerate" }).click();
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await support.replies(page).last().locator('[data-field="privacy"]').textContent(), "sealed · receipt verified");
  });

  test("receipts are checked against the provider's key, request and reply, in the page's own code", async () => {
    const { page } = browser;
    const verdicts = await page.evaluate(async () => {
      const { verifyReceipt } = await import("/oblivious.js");
      const { ed25519 } = await import("/privacy.js");
      const hex = (bytes) => [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
      const digest = async (text) => new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
      const secret = ed25519.utils.randomPrivateKey();
      const publicKey = hex(ed25519.getPublicKey(secret));
      const requestSha256 = await digest("request");
      const responseSha256 = await digest("reply");
      const payload = JSON.stringify({
        purpose: "gondola/provider-receipt/v1",
        provider: "pv-1",
        model: "m",
        quantization: "Q4_1",
        request_sha256: hex(requestSha256),
        response_sha256: hex(responseSha256),
        prompt_tokens: 1,
        completion_tokens: 2,
        issued_at_ms: 3,
      });
      const sign = (text, key = secret) => JSON.stringify({ public_key: hex(ed25519.getPublicKey(key)), payload: text, signature: hex(ed25519.sign(new TextEncoder().encode(text), key)) });
      const expected = { publicKey, provider: "pv-1", requestSha256, responseSha256 };
      const verdict = async (envelope, overrides = {}) => {
        try {
          const receipt = await verifyReceipt(envelope, { ...expected, ...overrides });
          return `ok ${receipt.completion_tokens}`;
        } catch (error) {
          return error.message;
        }
      };
      const forged = JSON.parse(sign(payload));
      forged.payload = forged.payload.replace('"completion_tokens":2', '"completion_tokens":9');
      return {
        good: await verdict(sign(payload)),
        forged: await verdict(JSON.stringify(forged)),
        otherSigner: await verdict(sign(payload, ed25519.utils.randomPrivateKey())),
        otherProvider: await verdict(sign(payload), { provider: "pv-2" }),
        otherRequest: await verdict(sign(payload), { requestSha256: await digest("another request") }),
        otherReply: await verdict(sign(payload), { responseSha256: await digest("another reply") }),
        malformed: await verdict("not json"),
      };
    });
    assert.deepEqual(verdicts, {
      good: "ok 2",
      forged: "the receipt's signature does not verify",
      otherSigner: "the receipt is signed by another key than the provider's",
      otherProvider: "the receipt is for another provider",
      otherRequest: "the receipt is for another request",
      otherReply: "the receipt is for another reply",
      malformed: "the receipt is malformed",
    });
  });

  test("an image is made in private mode: sealed to its provider, through the relay, paid with tokens, its receipt checked", async () => {
    const { page } = browser;
    const engine = await support.imageEngine();
    const provider = await support.imageProvider(gondola.url, engine.url, "private-image");
    try {
      // The page learns of the new model when it loads; private mode and the key are kept.
      await support.openApp(page, gondola.url);
      await page.locator("#private-badge").waitFor();
      await page.getByRole("button", { name: "+ New chat" }).click();
      await page.locator("#model-select").selectOption("private-image");
      await page.getByLabel("Size").selectOption("512x512");
      const sentFrom = requests.length;
      const prompt = `a lighthouse, ${canary}`;
      await support.send(page, prompt);
      assert.equal(await support.lastReplyFinished(page), "done");
      const reply = support.replies(page).last();
      const width = await reply.locator("figure.generated img").evaluate(async (img) => (await img.decode(), img.naturalWidth));
      assert.equal(width, 512);
      assert.equal(await reply.locator('[data-field="privacy"]').textContent(), "sealed · receipt verified");
      const detail = await reply.locator('[data-field="privacy"]').getAttribute("title");
      assert.match(detail, /^Sealed to pv-[0-9a-f]+ and sent through /);
      assert.ok(engine.requests.at(-1).prompt.includes(canary), "the engine got the prompt");
      // Every request of the image went to the relay, sealed; none held the prompt or the key
      // in the clear, and nothing went to the gateway's image route directly.
      const sent = requests.slice(sentFrom);
      const posts = sent.filter((request) => request.method === "POST");
      assert.ok(posts.length >= 1);
      for (const request of posts) assert.equal(request.url, `${relayOrigin}/ohttp`);
      assert.ok(!sent.some((request) => request.url.includes("/image/generate")));
      for (const request of requests) {
        assert.ok(!request.body.includes(canary), `${request.url} carried the prompt in the clear`);
        assert.ok(!request.body.includes(apiKey), `${request.url} carried the API key in the clear`);
      }
      // The gateway paid it with tokens, and logged neither prompt nor key.
      const gatewayLog = gondola.process.stderr();
      const lines = gatewayLog.split("\n").filter((line) => line.includes("model=private-image") && line.includes("paid_with"));
      assert.equal(lines.length, 1, gatewayLog);
      assert.match(lines[0], /paid_with="tokens"/);
      assert.match(lines[0], /sealed image/, "sealed to the provider: the gateway could not read it");
      assert.ok(!gatewayLog.includes(canary) && !gatewayLog.includes(apiKey));
    } finally {
      await provider.stop();
      await engine.close();
    }
  });
});
