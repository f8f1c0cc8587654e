// The web app with the real `gondola serve` and its real default model: streaming, figures,
// persistence across reloads and gateway restarts, export/import, incognito, encryption at
// rest, the model picker, and screenshots of the main views.

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

const CONFIG = '[gateway.models]\ndefault = "smollm2-135m-instruct"\n';
const SHELL = ["/", "/app.css", "/app.js", "/api.js", "/markdown.js", "/store.js", "/wallet.js", "/chain.js", "/browser-wallets.js", "/amounts.js", "/signing.js", "/transactions.js", "/privacy.js", "/oblivious.js", "/manifest.webmanifest", "/icon.svg"];

/** Visible text of every message of the chat on screen, in order. */
function messageTexts(page) {
  return page.locator("article.message .message-body").allInnerTexts();
}

function chatTitles(page) {
  return page.locator("#chat-list .chat-name").allInnerTexts();
}

async function exportFile(page) {
  await page.getByRole("button", { name: "Settings", exact: true }).click();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Export chats" }).click()]);
  const path = await download.path();
  await page.locator("#settings-dialog").getByRole("button", { name: "Cancel" }).click();
  return { name: download.suggestedFilename(), document: JSON.parse(readFileSync(path, "utf8")), path };
}

describe("the chat page with the real model", () => {
  let gondola;
  let browser;

  before(async () => {
    support.pullModel();
    gondola = await support.serve({ config: CONFIG });
    browser = await support.launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await gondola?.process.stop();
    support.removeTempDirs();
  });

  test("a reply streams in piece by piece, then shows its provider, tokens, speed and cost", async () => {
    const { page } = browser;
    await support.openApp(page, gondola.url);
    await support.chatSettings(page, { maxTokens: 48, temperature: 0 });
    // Every text the reply shows while it is still streaming, as the page draws it.
    await page.evaluate(() => {
      window.partials = [];
      new MutationObserver(() => {
        const all = document.querySelectorAll('article.message[data-role="assistant"]');
        const reply = all[all.length - 1];
        if (reply?.dataset.state === "streaming") window.partials.push(reply.querySelector(".message-body").textContent);
      }).observe(document.getElementById("messages"), { childList: true, subtree: true, characterData: true });
    });
    const response = page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions"));
    await support.send(page, "Tell me a short story about a cat.");
    const headers = (await response).headers();
    assert.equal(await support.lastReplyFinished(page), "done");

    const reply = support.replies(page).last();
    const final = await reply.locator(".message-body").textContent();
    const squash = (text) => text.replace(/\s+/g, "");
    const shown = [...new Set(await page.evaluate(() => window.partials))].filter((text) => text.trim() && text !== "…");
    for (const text of shown) {
      assert.ok(squash(text).length <= squash(final).length, `a text shown while streaming is longer than the reply: ${text}`);
    }
    // The whole text may be drawn once before the end of the stream arrives (the last token and
    // the end need not come in one read); before that, the reply must have grown in pieces.
    const partials = shown.filter((text) => squash(text).length < squash(final).length);
    assert.ok(partials.length >= 2, `several partial texts were shown before the end: ${JSON.stringify(shown)}`);
    assert.ok(squash(final).startsWith(squash(partials[0]).slice(0, 8)), `the reply grew from its first piece: ${partials[0]} → ${final}`);

    const provider = await reply.locator('[data-field="provider"]').textContent();
    assert.match(provider, /^pv-[0-9a-f]+$/);
    assert.equal(provider, headers["x-gondola-provider"]);
    const tokens = await reply.locator('[data-field="tokens"]').textContent();
    const [, prompt, completion] = /^(\d+) prompt · (\d+) completion tokens$/.exec(tokens) ?? [];
    assert.ok(Number(prompt) > 0 && Number(completion) > 0 && Number(completion) <= 48, tokens);
    assert.match(await reply.locator('[data-field="speed"]').textContent(), /^\d+\.\d tokens\/s$/);
    assert.match(await reply.locator('[data-field="cost"]').textContent(), /^\$\d/);
    assert.match(await page.locator("#account").textContent(), /requests left this minute/);
    await page.screenshot({ path: support.artifactPath("chat.png") });
  });

  test("the conversation survives a reload, a stopped gateway (the shell opens offline) and a restart with an empty data dir", async () => {
    const { page } = browser;
    await support.writesSettled(page);
    const before = await messageTexts(page);
    assert.equal(before.length, 2);

    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.deepEqual(await messageTexts(page), before);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);

    await gondola.process.stop();
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    await page.locator("#banner").getByText("Can't reach the gateway").waitFor();
    assert.deepEqual(await messageTexts(page), before, "the app shell came from the service worker, the chat from IndexedDB");

    gondola = await support.serve({ config: CONFIG, listen: `127.0.0.1:${gondola.port}` });
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.equal(await page.locator("#banner").isHidden(), true);
    assert.deepEqual(await messageTexts(page), before);
    await support.send(page, "Thank you!");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await page.locator("article.message").count(), 4, "the chat goes on with the new gateway");
  });

  test("conversations can be renamed, searched and deleted", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.chatSettings(page, { maxTokens: 12 });
    await support.send(page, "Name a fruit.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.deepEqual(await chatTitles(page), ["Name a fruit.", "Tell me a short story about a cat."]);

    await page.getByRole("button", { name: "Rename chat “Name a fruit.”" }).click();
    await page.getByLabel("New name for the chat").fill("Fruit talk");
    await page.getByLabel("New name for the chat").press("Enter");
    assert.equal(await page.locator("#chat-title").textContent(), "Fruit talk");

    await page.getByLabel("Search conversations").fill("cat");
    assert.deepEqual(await chatTitles(page), ["Tell me a short story about a cat."]);
    await page.getByLabel("Search conversations").fill("nothing like this");
    assert.deepEqual(await chatTitles(page), []);
    assert.equal(await page.locator("#chat-list-empty").textContent(), "No chat matches.");
    await page.getByLabel("Search conversations").fill("");

    await support.writesSettled(page);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.deepEqual(await chatTitles(page), ["Fruit talk", "Tell me a short story about a cat."]);

    await page.getByRole("button", { name: "Rename chat “Fruit talk”" }).click();
    await page.getByLabel("New name for the chat").fill("Throwaway");
    await page.getByLabel("New name for the chat").press("Enter");
    await page.getByRole("button", { name: "Delete chat “Throwaway”" }).click();
    await page.locator("#confirm-dialog").getByRole("button", { name: "Delete" }).click();
    await page.locator("#chat-list").getByText("Throwaway").waitFor({ state: "detached" });
    assert.deepEqual(await chatTitles(page), ["Tell me a short story about a cat."]);
    await support.writesSettled(page);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.deepEqual(await chatTitles(page), ["Tell me a short story about a cat."]);
  });

  test("export, delete everything and import give back identical conversations", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.chatSettings(page, { maxTokens: 12, systemPrompt: "Answer briefly." });
    await support.send(page, "What is the capital of France?");
    assert.equal(await support.lastReplyFinished(page), "done");
    await support.writesSettled(page);

    const first = await exportFile(page);
    assert.match(first.name, /^gondola-chats-\d{4}-\d{2}-\d{2}\.json$/);
    assert.equal(first.document.format, "gondola.chats");
    assert.equal(first.document.version, 1);
    assert.equal(first.document.chats.length, 2);
    const exported = first.document.chats.find((chat) => chat.title === "What is the capital of France?");
    assert.equal(exported.settings.system_prompt, "Answer briefly.");
    assert.equal(exported.messages[0].content, "What is the capital of France?");
    assert.ok(exported.messages[1].meta.provider.startsWith("pv-"));
    const titlesBefore = await chatTitles(page);
    const shownBefore = await messageTexts(page);

    await page.getByRole("button", { name: "Settings", exact: true }).click();
    await page.getByRole("button", { name: "Delete everything" }).click();
    await page.locator("#confirm-dialog").getByRole("button", { name: "Delete everything" }).click();
    await page.locator("#chat-list-empty").getByText("No chats yet.").waitFor();
    await support.writesSettled(page);
    const wiped = await support.inspectIndexedDb(page);
    assert.deepEqual(wiped.gondola.chats, []);
    assert.equal(wiped.gondola.keys.length, 1);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.deepEqual(await chatTitles(page), []);

    await page.getByRole("button", { name: "Settings", exact: true }).click();
    await page.locator("#import-file").setInputFiles(first.path);
    await page.locator("#data-status").getByText("Imported 2 chats.").waitFor();
    await page.locator("#settings-dialog").getByRole("button", { name: "Cancel" }).click();
    await support.writesSettled(page);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.deepEqual(await chatTitles(page), titlesBefore);
    assert.deepEqual(await messageTexts(page), shownBefore);
    const second = await exportFile(page);
    assert.deepEqual(second.document.chats, first.document.chats);
  });

  test("an incognito chat is kept in memory only: nothing reaches IndexedDB", async () => {
    const { page } = browser;
    await support.writesSettled(page);
    const needle = "incognito-canary-7f3a";
    const stored = await support.inspectIndexedDb(page, needle);
    await page.getByRole("button", { name: "New incognito chat" }).click();
    assert.equal(await page.locator("#incognito-badge").isVisible(), true);
    await support.chatSettings(page, { maxTokens: 12 });
    await support.send(page, `Repeat this word: ${needle}`);
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await page.locator('#chat-list [data-incognito="true"]').count(), 1);
    await support.writesSettled(page);
    assert.deepEqual(await support.inspectIndexedDb(page, needle), stored, "IndexedDB is exactly as it was");

    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.equal(await page.locator('#chat-list [data-incognito="true"]').count(), 0, "gone with the page");
    assert.ok(!(await chatTitles(page)).some((title) => title.includes(needle)));
  });

  test("chats are encrypted at rest under a non-extractable key; the app is installable and its worker caches only the shell", async () => {
    const { page, context } = browser;
    const stored = await support.inspectIndexedDb(page, "capital of France");
    assert.deepEqual(Object.keys(stored), ["gondola"]);
    assert.equal(stored.gondola.chats.length, 2);
    for (const record of [...stored.gondola.chats, ...stored.gondola.prefs]) {
      assert.deepEqual(record.fields, ["data", "id", "iv"]);
      assert.equal(record.containsNeedle, false, "no plain text in IndexedDB");
      assert.equal(record.ivHex.length, 24);
    }
    const ivs = stored.gondola.chats.map((record) => record.ivHex);
    assert.equal(new Set(ivs).size, ivs.length, "a fresh IV per record");
    assert.deepEqual(stored.gondola.keys[0].key, { type: "secret", extractable: false, algorithm: "AES-GCM", usages: ["encrypt", "decrypt"] });
    const exportAttempt = await page.evaluate(async () => {
      const db = await new Promise((resolve) => {
        const open = indexedDB.open("gondola");
        open.onsuccess = () => resolve(open.result);
      });
      const record = await new Promise((resolve) => {
        const get = db.transaction("keys").objectStore("keys").get("records");
        get.onsuccess = () => resolve(get.result);
      });
      db.close();
      try {
        await crypto.subtle.exportKey("raw", record.key);
        return "exported";
      } catch (error) {
        return error.name;
      }
    });
    assert.equal(exportAttempt, "InvalidAccessError");

    const cached = await page.evaluate(async () => {
      const urls = [];
      for (const name of await caches.keys()) {
        for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
      }
      return urls.sort();
    });
    assert.deepEqual(cached, [...SHELL].sort());
    const cdp = await context.newCDPSession(page);
    assert.deepEqual(await cdp.send("Page.getInstallabilityErrors"), { installabilityErrors: [] });
    const manifest = await cdp.send("Page.getAppManifest");
    assert.deepEqual(manifest.errors, []);
    await cdp.detach();
  });

  test("the model picker lists the served models with their privacy label, traits and capabilities", async () => {
    const { page } = browser;
    const served = (await (await fetch(`${gondola.url}/v1/models`)).json()).data.map((model) => model.id);
    assert.deepEqual(served, ["smollm2-135m-instruct"]);
    const options = await page.locator("#model-select option").evaluateAll((nodes) => nodes.map((node) => node.value));
    assert.deepEqual(options, served);
    const summary = page.locator("#model-summary");
    assert.equal(await summary.locator(".chip-privacy").textContent(), "Private");
    assert.deepEqual(await summary.locator(".chip-trait").allTextContents(), ["default", "default_code", "default_reasoning", "+3 traits"]);
    const chips = await summary.locator(".chip").allTextContents();
    for (const expected of ["1 provider", "JSON schema", "Tools", "int4", "2,048 tokens context", "$0.02 in / $0.08 out per 1M tokens"]) {
      assert.ok(chips.includes(expected), `${expected} in ${JSON.stringify(chips)}`);
    }
  });

  test("a reply is read aloud by the gateway's voice, and reading can be stopped", async () => {
    const { page, errors } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    // A short reply, the same on every run: it is played to its end in real time.
    await support.chatSettings(page, { maxTokens: 24, temperature: 0 });
    await support.send(page, "Say hello in five words.");
    assert.equal(await support.lastReplyFinished(page), "done");
    const reply = support.replies(page).last();
    // Every audio the page plays, with its length once known and whether it played through.
    await page.evaluate(() => {
      window.played = [];
      const play = HTMLMediaElement.prototype.play;
      HTMLMediaElement.prototype.play = function () {
        const entry = { duration: 0, ended: false };
        window.played.push(entry);
        this.addEventListener("loadedmetadata", () => (entry.duration = this.duration));
        this.addEventListener("ended", () => (entry.ended = true));
        return play.call(this);
      };
    });
    const read = reply.getByRole("button", { name: "Read aloud" });
    const spoken = page.waitForResponse((r) => r.url().endsWith("/v1/audio/speech"));
    await read.click();
    const response = await spoken;
    assert.equal(response.status(), 200);
    assert.equal(response.headers()["content-type"], "audio/mpeg");
    assert.equal(response.request().method(), "POST");
    const asked = JSON.parse(response.request().postData());
    assert.equal(asked.model, "piper-en-us-joe");
    assert.equal(asked.input, (await reply.locator(".message-body").innerText()).trim());
    // It plays to its end, then the button offers reading again.
    await reply.getByRole("button", { name: "Stop reading" }).waitFor();
    await reply.getByRole("button", { name: "Read aloud" }).waitFor({ timeout: 60_000 });
    const played = await page.evaluate(() => window.played);
    assert.equal(played.length, 1);
    assert.ok(played[0].ended && played[0].duration > 0.5, JSON.stringify(played));
    // Started again and stopped half-way.
    await read.click();
    await reply.getByRole("button", { name: "Stop reading" }).click();
    await reply.getByRole("button", { name: "Read aloud" }).waitFor();
    assert.deepEqual(errors, []);
  });

  test("a message is dictated: the microphone's speech is transcribed into the composer", async () => {
    // The microphone plays speech the gateway's own voice made.
    const spoken = await fetch(`${gondola.url}/v1/audio/speech`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ input: "Please tell me a story about the sea.", response_format: "wav" }),
    });
    assert.equal(spoken.status, 200);
    const file = path.join(support.tempDir("audio"), "speech.wav");
    writeFileSync(file, Buffer.from(await spoken.arrayBuffer()));
    const other = await support.launchBrowser({
      extraArgs: ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${file}`],
    });
    try {
      const { page, errors } = other;
      await support.openApp(page, gondola.url);
      const dictate = page.locator("#dictate");
      await dictate.waitFor();
      await dictate.click();
      await page.waitForFunction(() => document.getElementById("dictate").textContent === "Stop dictating");
      // Four seconds of the microphone, as the recorder reports them.
      await page.waitForFunction(() => Number(document.getElementById("dictate").dataset.recordedMs) >= 4000);
      const heard = page.waitForResponse((r) => r.url().endsWith("/v1/audio/transcriptions"));
      await dictate.click();
      const response = await heard;
      assert.equal(response.status(), 200);
      assert.ok(response.request().headers()["content-type"].startsWith("multipart/form-data"));
      await page.waitForFunction(() => document.getElementById("dictate").textContent === "Dictate");
      const typed = await page.locator("#prompt").inputValue();
      assert.match(typed.toLowerCase(), /story/, typed);
      assert.match(typed.toLowerCase(), /sea/, typed);
      assert.deepEqual(errors, []);
    } finally {
      await other.close();
    }
  });

  test("screenshots of the settings, dark mode and phone-sized views", async () => {
    const { page, context } = browser;
    await page.getByRole("button", { name: "Settings", exact: true }).click();
    await page.locator("#settings-dialog").waitFor();
    await page.screenshot({ path: support.artifactPath("settings.png") });
    await page.locator("#settings-dialog").getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("button", { name: "Chat settings" }).click();
    await page.screenshot({ path: support.artifactPath("chat-settings.png") });
    await page.locator("#chat-settings-dialog").getByRole("button", { name: "Cancel" }).click();

    const lightBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.getByRole("button", { name: "Switch to dark theme" }).click();
    assert.equal(await page.locator("html").getAttribute("data-theme"), "dark");
    const darkBackground = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(darkBackground, lightBackground);
    assert.equal(darkBackground, "rgb(18, 20, 22)");
    await page.screenshot({ path: support.artifactPath("chat-dark.png") });
    await support.writesSettled(page);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.equal(await page.locator("html").getAttribute("data-theme"), "dark", "the choice is remembered");
    await page.getByRole("button", { name: "Switch to light theme" }).click();

    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await support.openApp(phone, gondola.url);
    const sidebar = phone.locator("#sidebar");
    assert.ok((await sidebar.boundingBox()).x < 0, "the chat list is off screen on a phone");
    assert.equal(await phone.evaluate(() => document.documentElement.scrollWidth), 390, "nothing is wider than the phone");
    const sendBox = await phone.getByRole("button", { name: "Send message" }).boundingBox();
    assert.ok(sendBox.x + sendBox.width <= 390, "the send button is on screen");
    await phone.screenshot({ path: support.artifactPath("phone-chat.png") });
    await phone.getByRole("button", { name: "Show conversations" }).click();
    await phone.waitForFunction(() => document.getElementById("sidebar").getBoundingClientRect().x >= 0);
    await phone.screenshot({ path: support.artifactPath("phone-conversations.png") });
    await phone.close();
  });
});
