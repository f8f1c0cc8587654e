// The web app with replies the tiny real model cannot be made to give on cue: a real
// `gondola gateway` and a real `gondola provider --upstream` fronting a scripted
// OpenAI-compatible engine (support.fixtureUpstream). Covers hostile markup, reasoning, the
// per-chat settings as the engine receives them, stop, regenerate, edit-and-resend, and the
// Markdown renderer.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import * as support from "./support.mjs";

describe("replies from a scripted upstream engine", () => {
  let fixture;
  let gateway;
  let provider;
  let browser;

  before(async () => {
    fixture = await support.fixtureUpstream();
    gateway = await support.gateway("");
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

  test("a hostile reply is shown as literal text and runs nothing", async () => {
    const { page, dialogs, errors } = browser;
    await page.evaluate(() => {
      window.violations = [];
      document.addEventListener("securitypolicyviolation", (event) => window.violations.push(event.violatedDirective));
    });
    await support.send(page, "Say something hostile.");
    assert.equal(await support.lastReplyFinished(page), "done");
    const reply = support.replies(page).last();
    const text = await reply.locator(".message-body").textContent();
    for (const literal of [
      `<img src=x onerror="window.__pwned='img';alert(1)">`,
      "<script>window.__pwned='script'</script>",
      "[click me](javascript:window.__pwned='link')",
      "[relative](/v1/models)",
      "[data](data:text/html,<script>alert(2)</script>)",
      `<a href="javascript:alert(3)">raw anchor</a>`,
      "<svg onload=alert(4)></svg>",
      `<iframe src="javascript:alert(5)"></iframe>`,
    ]) {
      assert.ok(text.includes(literal), `shown as text: ${literal}\n${text}`);
    }
    const elements = await page.locator("#messages").evaluate((box) => ({
      active: box.querySelectorAll("img, script, svg, iframe, object, embed, style, [onerror], [onload]").length,
      links: [...box.querySelectorAll("a")].map((a) => a.getAttribute("href")),
      code: box.querySelector(".codeblock code")?.textContent,
    }));
    assert.equal(elements.active, 0, "no element from the reply can load or run anything");
    assert.deepEqual(elements.links, ["https://example.invalid/x.png", "https://example.com/docs?a=1"]);
    assert.equal(elements.code, `<iframe src="javascript:alert(5)"></iframe>`);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.deepEqual(await page.evaluate(() => window.violations), [], "nothing even tried to run");
    assert.deepEqual(dialogs, []);
    assert.deepEqual(errors, []);
    const link = reply.getByRole("link", { name: "safe link" });
    assert.equal(await link.getAttribute("rel"), "noopener noreferrer nofollow");
    assert.equal(await link.getAttribute("target"), "_blank");
    await page.screenshot({ path: support.artifactPath("hostile-reply.png") });
  });

  test("reasoning, in <think> tags or reasoning_content, is folded away in a closed details element", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.send(page, "Please think first.");
    assert.equal(await support.lastReplyFinished(page), "done");
    const reply = support.replies(page).last();
    const details = reply.locator("details.reasoning");
    assert.equal(await details.getAttribute("open"), null, "collapsed");
    assert.equal(await details.locator("summary").textContent(), "Reasoning");
    const thoughts = await details.textContent();
    assert.ok(thoughts.includes("First I weigh the options.") && thoughts.includes("secret plan in tags"), thoughts);
    assert.equal(await reply.locator(".message-body").textContent(), "The answer is 42.");
    assert.equal(await reply.locator(".message-body strong").textContent(), "answer");
    await details.locator("summary").click();
    assert.equal(await details.locator(".markdown").isVisible(), true);

    await support.send(page, "And now?");
    assert.equal(await support.lastReplyFinished(page), "done");
    const history = fixture.requests.at(-1).messages.filter((message) => message.role !== "system");
    assert.deepEqual(history.at(-2), { role: "assistant", content: "The **answer** is 42." }, "reasoning is not sent back");
  });

  test("per-chat settings reach the engine: system prompt, temperature, top_p, max tokens and the gateway prompt toggle", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.chatSettings(page, { systemPrompt: "You are a pirate.", temperature: 0.3, topP: 0.5, maxTokens: 77, includeGatewayPrompt: false });
    await support.send(page, "Hello there.");
    assert.equal(await support.lastReplyFinished(page), "done");
    let seen = fixture.requests.at(-1);
    assert.deepEqual(seen.messages, [
      { role: "system", content: "You are a pirate." },
      { role: "user", content: "Hello there." },
    ]);
    assert.equal(seen.temperature, 0.3);
    assert.equal(seen.top_p, 0.5);
    assert.equal(seen.max_tokens, 77);

    await support.chatSettings(page, { includeGatewayPrompt: true });
    await support.send(page, "Again.");
    assert.equal(await support.lastReplyFinished(page), "done");
    seen = fixture.requests.at(-1);
    assert.equal(seen.messages[0].role, "system");
    assert.ok(seen.messages[0].content.startsWith("You are a helpful assistant."), seen.messages[0].content);
    assert.ok(seen.messages[0].content.endsWith("You are a pirate."));

    await page.getByRole("button", { name: "Chat settings" }).click();
    await page.getByLabel("Temperature").fill("7");
    await page.locator("#chat-settings-dialog").getByRole("button", { name: "Save" }).click();
    await page.locator("#chat-settings-error").getByText("Temperature must be a number from 0 to 2.").waitFor();
    await page.locator("#chat-settings-dialog").getByRole("button", { name: "Cancel" }).click();
  });

  test("Esc stops a streaming reply, keeps what came, and the engine's stream is dropped", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    const prompt = "Write slowly, please.";
    await support.send(page, prompt);
    const reply = support.replies(page).last();
    await reply.locator(".message-body").getByText("word3", { exact: false }).waitFor();
    assert.equal(await reply.getAttribute("data-state"), "streaming");
    assert.equal(await page.getByRole("button", { name: "Stop the reply (Esc)" }).isVisible(), true);
    await page.keyboard.press("Escape");
    assert.equal(await support.lastReplyFinished(page), "stopped");
    assert.equal(await reply.locator(".message-note").textContent(), "Stopped.");
    assert.ok((await reply.locator(".message-body").textContent()).startsWith("word0 word1 word2 word3"));
    await fixture.abandonedStream(prompt);
    assert.equal(await page.getByRole("button", { name: "Send message" }).isVisible(), true);
  });

  test("a chat deleted while its reply streams stays deleted", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    const prompt = "Answer slowly, then vanish.";
    await support.send(page, prompt);
    await support.replies(page).last().locator(".message-body").getByText("word2", { exact: false }).waitFor();
    await page.getByRole("button", { name: `Delete chat “${prompt}”` }).click();
    await page.locator("#confirm-dialog").getByRole("button", { name: "Delete" }).click();
    await page.locator("#chat-list").getByText(prompt).waitFor({ state: "detached" });
    await fixture.abandonedStream(prompt);
    await support.writesSettled(page);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    assert.ok(!(await page.locator("#chat-list .chat-name").allTextContents()).includes(prompt));
  });

  test("regenerate replaces the last reply; edit-and-resend rewrites the conversation from that message", async () => {
    const { page } = browser;
    await page.getByRole("button", { name: "+ New chat" }).click();
    await support.send(page, "First question.");
    assert.equal(await support.lastReplyFinished(page), "done");
    const sent = fixture.requests.length;

    await support.replies(page).last().getByRole("button", { name: "Regenerate" }).click();
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await page.locator("article.message").count(), 2, "the reply was replaced, not added");
    assert.equal(fixture.requests.length, sent + 1);
    assert.deepEqual(
      fixture.requests.at(-1).messages.filter((m) => m.role !== "system"),
      [{ role: "user", content: "First question." }],
    );

    await page.locator('article.message[data-role="user"]').getByRole("button", { name: "Edit" }).click();
    await page.getByLabel("Edit your message").fill("Edited question.");
    await page.getByRole("button", { name: "Save & send" }).click();
    await page.waitForFunction(() => document.querySelector('article.message[data-role="user"] .message-body')?.textContent === "Edited question.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.equal(await page.locator("article.message").count(), 2);
    await support.send(page, "Second question.");
    assert.equal(await support.lastReplyFinished(page), "done");
    assert.deepEqual(
      fixture.requests.at(-1).messages.filter((m) => m.role !== "system"),
      [
        { role: "user", content: "Edited question." },
        { role: "assistant", content: "Fixture reply." },
        { role: "user", content: "Second question." },
      ],
    );
  });

  test("the Markdown renderer builds headings, emphasis, code, lists, quotes and safe links", async () => {
    const { page } = browser;
    const rendered = await page.evaluate(async () => {
      const { renderMarkdown } = await import("/markdown.js");
      const box = document.createElement("div");
      box.append(
        renderMarkdown(
          [
            "## Title with *emphasis*",
            "",
            "Some **bold**, _italic_, ~~gone~~, `a <b>` and snake_case_name.",
            "Second line of the paragraph.",
            "",
            "- one",
            "- two",
            "  - nested",
            "",
            "3. three",
            "4. four",
            "",
            "> quoted **text**",
            "",
            "---",
            "",
            "```js",
            "const x = '<b>';",
            "```",
            "",
            "[web](https://example.com) [mail](mailto:a@example.com) [bad](javascript:alert(1)) <https://auto.example> see https://bare.example/path.",
          ].join("\n"),
        ),
      );
      const q = (selector) => box.querySelector(selector);
      return {
        h2: q("h2")?.textContent,
        h2em: q("h2 em")?.textContent,
        strong: q("p strong")?.textContent,
        em: q("p em")?.textContent,
        del: q("del")?.textContent,
        code: q("p code")?.textContent,
        snake: q("p").textContent.includes("snake_case_name"),
        br: q("p br") !== null,
        ul: [...box.querySelectorAll(":scope > ul > li")].map((li) => li.firstChild.textContent),
        nested: q("ul ul li")?.textContent,
        olStart: q("ol")?.start,
        ol: [...box.querySelectorAll("ol > li")].map((li) => li.textContent),
        quote: q("blockquote strong")?.textContent,
        hr: q("hr") !== null,
        language: q(".codeblock-lang")?.textContent,
        block: q("pre code")?.textContent,
        copy: q(".codeblock button")?.textContent,
        links: [...box.querySelectorAll("a")].map((a) => [a.textContent, a.getAttribute("href")]),
        lastText: box.lastElementChild.textContent,
        tags: box.querySelectorAll("b").length,
      };
    });
    assert.deepEqual(rendered, {
      h2: "Title with emphasis",
      h2em: "emphasis",
      strong: "bold",
      em: "italic",
      del: "gone",
      code: "a <b>",
      snake: true,
      br: true,
      ul: ["one", "two"],
      nested: "nested",
      olStart: 3,
      ol: ["three", "four"],
      quote: "text",
      hr: true,
      language: "js",
      block: "const x = '<b>';",
      copy: "Copy",
      links: [
        ["web", "https://example.com/"],
        ["mail", "mailto:a@example.com"],
        ["https://auto.example", "https://auto.example/"],
        ["https://bare.example/path", "https://bare.example/path"],
      ],
      lastText: "web mail [bad](javascript:alert(1)) https://auto.example see https://bare.example/path.",
      tags: 0,
    });
  });
});
