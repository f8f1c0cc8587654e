// The web app's image mode: a real `gondola gateway` with a real `gondola provider` in front
// of a stand-in for AUTOMATIC1111 (support.imageEngine: no image model runs here, so it
// answers real PNGs of the asked size). Choosing the image model shows the size, style and
// seed; sending a prompt makes an image, shown in the conversation, made with what was chosen;
// the image is kept in the browser with the chat (encrypted) and is there after a reload.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

const MODEL = "sd-browser";

describe("image mode", () => {
  let engine;
  let fixture;
  let gateway;
  let provider;
  let chatProvider;
  let browser;

  before(async () => {
    engine = await support.imageEngine();
    fixture = await support.fixtureUpstream();
    gateway = await support.gateway("");
    provider = await support.imageProvider(gateway.url, engine.url, MODEL);
    chatProvider = await support.upstreamProvider(gateway.url, fixture.url, "fixture");
    browser = await support.launchBrowser();
    await support.openApp(browser.page, gateway.url);
  });

  after(async () => {
    await browser?.close();
    await provider?.stop();
    await chatProvider?.stop();
    await gateway?.process.stop();
    await engine?.close();
    await fixture?.close();
    support.removeTempDirs();
  });

  test("an image model makes an image of the prompt, with the size, style and seed chosen", async () => {
    const { page, errors } = browser;
    const options = page.locator("#image-options");
    assert.equal(await options.isHidden(), true, "no image settings for a chat model");
    await page.locator("#model-select").selectOption(MODEL);
    await options.waitFor({ state: "visible" });
    assert.equal(await page.locator("#prompt").getAttribute("placeholder"), "Describe an image");
    await page.getByLabel("Size").selectOption("512x512");
    // The styles come from the gateway's /image/styles.
    await page.locator('#image-style option[value="Anime"]').waitFor({ state: "attached" });
    await page.getByLabel("Style").selectOption("Anime");
    await page.getByLabel("Seed").fill("4242");

    await support.send(page, "a red fox asleep in the snow");
    assert.equal(await support.lastReplyFinished(page), "done");
    const picture = support.replies(page).last().locator("figure.generated img");
    await picture.waitFor();
    const shown = await picture.evaluate(async (img) => {
      await img.decode();
      return { width: img.naturalWidth, height: img.naturalHeight, alt: img.alt };
    });
    assert.deepEqual(shown, { width: 512, height: 512, alt: "Image made from: a red fox asleep in the snow" });
    const asked = engine.requests.at(-1);
    assert.equal(asked.width, 512);
    assert.equal(asked.height, 512);
    assert.equal(asked.seed, 4242);
    assert.ok(asked.prompt.includes("a red fox asleep in the snow") && asked.prompt.includes("anime"), asked.prompt);
    const caption = await support.replies(page).last().locator("figcaption").textContent();
    assert.equal(caption, "512×512 · Anime · seed 4242");
    assert.equal(await support.replies(page).last().getByRole("link", { name: "Download" }).getAttribute("download"), "gondola-4242.png");
    await page.screenshot({ path: support.artifactPath("image-mode.png") });
    assert.deepEqual(errors, []);
  });

  test("the image is kept with the chat, encrypted, and is there after a reload", async () => {
    const { page } = browser;
    await support.writesSettled(page);
    const stored = await support.inspectIndexedDb(page, "a red fox asleep");
    const chats = stored.gondola.chats;
    assert.equal(chats.length, 1);
    assert.equal(chats[0].containsNeedle, false, "the prompt is not stored in plain text");
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    await page.locator("#chat-list").getByText("a red fox asleep in the snow").click();
    const picture = support.replies(page).last().locator("figure.generated img");
    await picture.waitFor();
    assert.equal(await picture.evaluate(async (img) => (await img.decode(), img.naturalWidth)), 512);
    // Back to a chat model: no image settings, and it chats.
    await page.getByRole("button", { name: "+ New chat" }).click();
    await page.locator("#model-select").selectOption("fixture");
    assert.equal(await page.locator("#image-options").isHidden(), true);
    await support.send(page, "Hello there.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await support.replies(page).last().locator(".message-body").textContent(), "Fixture reply.");
  });
});
