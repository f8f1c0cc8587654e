// Plumbing for the browser suite: the real `gondola` binary (serve, gateway, provider) on
// loopback port 0, a fixture upstream engine for replies the real model cannot be made to give,
// a stand-in image engine (AUTOMATIC1111's API, real PNGs) for the image mode, Foundry's anvil
// (the npm package contracts/ pins) for chain mode, and Debian's Chromium driven by playwright-core with a fresh profile per browser.

import { execFileSync, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";

export const repo = path.resolve(import.meta.dirname, "..", "..");
const target = process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, "target");
export const binary = process.env.GONDOLA_BIN ?? path.join(target, "debug", "gondola");
/** The model cache the cargo end-to-end tests use too (their CARGO_TARGET_TMPDIR). */
export const cacheDir = path.join(target, "tmp", "model-cache");
export const artifacts = path.join(target, "browser-artifacts");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Generous bound for a process to start (model load included) on a slow, shared machine. */
const START_TIMEOUT_MS = 120_000;
/** Bound for a process to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

const temporary = [];

export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `gondola-browser-${prefix}-`));
  temporary.push(dir);
  return dir;
}

export function removeTempDirs() {
  while (temporary.length) rmSync(temporary.pop(), { recursive: true, force: true });
}

/**
 * Pulls the default models into the shared cache (a no-op once they are there and verified):
 * the embedding model and the voice too, which `gondola serve` runs beside the chat model.
 * Resolves to the chat model's path.
 */
export function pullModel() {
  for (const model of ["all-minilm-l6-v2", "piper-en-us-joe", "whisper-tiny-en"]) {
    execFileSync(binary, ["pull", model, "--cache-dir", cacheDir], { encoding: "utf8" });
  }
  return execFileSync(binary, ["pull", "--cache-dir", cacheDir], { encoding: "utf8" }).trim();
}

/** A running `gondola` process: its stdout lines as they come, its stderr in a file. */
export class Gondola {
  constructor(args) {
    this.dir = tempDir("process");
    this.stderrPath = path.join(this.dir, "stderr.log");
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("GONDOLA_") && name !== "RUST_LOG"));
    this.child = spawn(binary, args, { env, stdio: ["ignore", "pipe", openSync(this.stderrPath, "w")] });
    this.lines = [];
    this.waiters = [];
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    this.child.once("exit", () => {
      for (const waiter of this.waiters) waiter.fail(new Error(`gondola exited; stderr:\n${this.stderr()}`));
      this.waiters = [];
    });
    let partial = "";
    this.child.stdout.setEncoding("utf8");
    this.child.stdout.on("data", (text) => {
      partial += text;
      const lines = partial.split("\n");
      partial = lines.pop();
      for (const line of lines) {
        this.lines.push(line);
        this.waiters = this.waiters.filter((waiter) => !waiter.check(line));
      }
    });
  }

  stderr() {
    try {
      return readFileSync(this.stderrPath, "utf8");
    } catch {
      return "";
    }
  }

  /** Resolves with the first stdout line containing `needle`. */
  waitForLine(needle) {
    const seen = this.lines.find((line) => line.includes(needle));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line with ${needle}; stderr:\n${this.stderr()}`)), START_TIMEOUT_MS);
      this.waiters.push({
        check: (line) => {
          if (!line.includes(needle)) return false;
          clearTimeout(timer);
          resolve(line);
          return true;
        },
        fail: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

function urlIn(line) {
  return line.slice(line.indexOf("http")).split(/\s+/)[0].replace(/\/v1$/, "");
}

function configArgs(config) {
  if (!config) return [];
  const file = path.join(tempDir("config"), "gondola.toml");
  writeFileSync(file, config);
  return ["--config", file];
}

/** `gondola serve` with the real default model. Resolves to {process, url, port, data}. */
export async function serve({ listen = "127.0.0.1:0", config = null, extra = [] } = {}) {
  const data = path.join(tempDir("data"), "data");
  const process_ = new Gondola([
    "serve",
    "--listen",
    listen,
    "--data-dir",
    data,
    "--cache-dir",
    cacheDir,
    ...configArgs(config),
    ...extra,
  ]);
  const url = urlIn(await process_.waitForLine("gateway listening on"));
  await process_.waitForLine("ready:");
  return { process: process_, url, port: Number(new URL(url).port), data };
}

/** `gondola gateway` alone (no model), with a config file and any `extra` flags. */
export async function gateway(config = "", extra = []) {
  const data = path.join(tempDir("gateway"), "data");
  const process_ = new Gondola(["gateway", "--listen", "127.0.0.1:0", "--data-dir", data, ...configArgs(config), ...extra]);
  const url = urlIn(await process_.waitForLine("gateway listening on"));
  return { process: process_, url, data };
}

/** `gondola relay` on `listen`, in front of the gateway at `gatewayUrl`. Resolves to {process, url}. */
export async function relay(gatewayUrl, listen = "127.0.0.1:0") {
  const process_ = new Gondola(["relay", "--listen", listen, "--gateway", gatewayUrl]);
  const url = urlIn(await process_.waitForLine("relay listening on"));
  return { process: process_, url };
}

/**
 * A loopback port free a moment ago, for a process whose address must be known before it
 * starts. It is taken from below the kernel's ephemeral range, so that no process binding port
 * 0 meanwhile (a gateway, a provider, a node) can be handed it before its owner binds it.
 */
export async function freePort() {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the usual range's start.
  }
  const floor = Math.min(20_000, Math.max(1_024, low - 10_000));
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    const free = await new Promise((resolve) => {
      const server = http.createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error("no free port below the ephemeral range");
}

/** Runs a `gondola` CLI command against a gateway, as a user would, and returns its `--json` output. */
export function cli(args, gatewayUrl, dataDir) {
  const output = execFileSync(binary, [...args, "--gateway", gatewayUrl, "--data-dir", dataDir, "--json"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return JSON.parse(output);
}

/** Runs a `gondola` CLI command against a gateway and returns what it printed, trimmed. */
export function cliText(args, gatewayUrl, dataDir) {
  return execFileSync(binary, [...args, "--gateway", gatewayUrl, "--data-dir", dataDir], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

/** `gondola provider` fronting an OpenAI-compatible upstream engine, registered with `gatewayUrl`. */
export async function upstreamProvider(gatewayUrl, upstreamUrl, model) {
  const process_ = new Gondola([
    "provider",
    "--gateway",
    gatewayUrl,
    "--upstream",
    `${upstreamUrl}/v1`,
    "--model",
    model,
    "--data-dir",
    path.join(tempDir("provider"), "data"),
  ]);
  await process_.waitForLine("ready: provider");
  return process_;
}

// ---------------------------------------------------------------- image engine stand-in

/** A real PNG, `width` × `height` (8-bit RGB, a gradient), encoded with node's zlib. */
export function png(width, height) {
  const row = 1 + width * 3;
  const raw = Buffer.alloc(row * height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      raw.set([x % 256, y % 256, 128], y * row + 1 + x * 3);
    }
  }
  const chunk = (type, data) => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(type), data])));
    return Buffer.concat([head, Buffer.from(type), data, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/**
 * A stand-in for AUTOMATIC1111's web UI (no image model runs here): `POST /sdapi/v1/txt2img`
 * answered with a real PNG of the asked size. It records every request body.
 */
export async function imageEngine() {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (text) => {
      body += text;
    });
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/sdapi/v1/txt2img") {
        res.writeHead(404, { "content-type": "application/json" }).end('{"detail":"Not Found"}');
        return;
      }
      const request = JSON.parse(body);
      requests.push(request);
      const image = png(request.width, request.height).toString("base64");
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ images: [image], parameters: request, info: "{}" }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

/** `gondola provider` serving image model `model` from the AUTOMATIC1111 stand-in at `engineUrl`. */
export async function imageProvider(gatewayUrl, engineUrl, model) {
  const process_ = new Gondola([
    "provider",
    "--gateway",
    gatewayUrl,
    "--model-type",
    "image",
    "--upstream",
    engineUrl,
    "--upstream-api",
    "automatic1111",
    "--model-id",
    model,
    "--model",
    "sd15.safetensors",
    "--data-dir",
    path.join(tempDir("provider"), "data"),
  ]);
  await process_.waitForLine("ready: provider");
  return process_;
}

// ---------------------------------------------------------------- fixture upstream engine

/** Text the fixture streams for a prompt containing "hostile". */
export const HOSTILE_REPLY = [
  "Here you go <img src=x onerror=\"window.__pwned='img';alert(1)\"> ",
  "and <script>window.__pwned='script'</script> and ",
  "[click me](javascript:window.__pwned='link') and [relative](/v1/models) and ",
  "[data](data:text/html,<script>alert(2)</script>) and ",
  "<a href=\"javascript:alert(3)\">raw anchor</a> and <svg onload=alert(4)></svg> and ",
  "![pic](https://example.invalid/x.png) and a [safe link](https://example.com/docs?a=1).\n\n",
  "```html\n<iframe src=\"javascript:alert(5)\"></iframe>\n```\n",
];

function chunk(delta, finishReason = null) {
  return `data: ${JSON.stringify({
    id: "fixture",
    object: "chat.completion.chunk",
    created: 0,
    model: "fixture",
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  })}\n\n`;
}

/**
 * An OpenAI-compatible upstream that streams scripted replies, chosen by the last user message:
 * "hostile" (markup and script links), "think" (reasoning both ways), "slow" (a long reply, a
 * piece every 25 ms, until the reader goes away), "break" (one piece, then a broken
 * connection), otherwise "Fixture reply.". It records every
 * request body and every stream whose reader went away.
 */
export async function fixtureUpstream() {
  const requests = [];
  const abandoned = [];
  const events = new EventEmitter();
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (text) => {
      body += text;
    });
    req.on("end", () => {
      if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
        return;
      }
      const request = JSON.parse(body);
      requests.push(request);
      const prompt = String(request.messages.at(-1)?.content ?? "");
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      let pieces;
      let reasoning = [];
      if (prompt.includes("hostile")) pieces = HOSTILE_REPLY;
      else if (prompt.includes("think")) {
        reasoning = ["First I weigh ", "the options."];
        pieces = ["<think>secret plan", " in tags</think>", "The **answer** is 42."];
      } else if (prompt.includes("slow")) pieces = Array.from({ length: 2000 }, (_, i) => `word${i} `);
      else if (prompt.includes("break")) {
        // One piece, then the engine's connection breaks mid-reply, once the piece has been
        // handed to the socket (a break before that could overtake it).
        res.write(chunk({ role: "assistant", content: "Half an ans" }), () => res.destroy());
        return;
      } else pieces = ["Fixture ", "reply."];
      let index = 0;
      let closed = false;
      res.on("close", () => {
        closed = true;
        if (index < pieces.length) {
          abandoned.push(prompt);
          events.emit("abandoned", prompt);
        }
      });
      const usage = () =>
        `data: ${JSON.stringify({ id: "fixture", object: "chat.completion.chunk", created: 0, model: "fixture", choices: [], usage: { prompt_tokens: 11, completion_tokens: pieces.length, total_tokens: 11 + pieces.length } })}\n\n`;
      for (const thought of reasoning) res.write(chunk({ role: "assistant", reasoning_content: thought }));
      const next = () => {
        if (closed) return;
        if (index < pieces.length) {
          res.write(chunk({ role: "assistant", content: pieces[index] }));
          index += 1;
          if (prompt.includes("slow")) setTimeout(next, 25);
          else setImmediate(next);
          return;
        }
        res.write(chunk({}, "stop"));
        res.write(usage());
        res.end("data: [DONE]\n\n");
      };
      next();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    abandoned,
    /** Resolves when the reader of the stream for `prompt` has gone away. */
    abandonedStream: (prompt) =>
      abandoned.includes(prompt)
        ? Promise.resolve()
        : new Promise((resolve) => {
            const listener = (which) => {
              if (which !== prompt) return;
              events.off("abandoned", listener);
              resolve();
            };
            events.on("abandoned", listener);
          }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

// ---------------------------------------------------------------- chain

/** anvil's first two development accounts' keys (the well-known test mnemonic's), each funded with 10,000 ether. */
export const ANVIL_KEYS = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
];

/**
 * An anvil node on loopback (a port it picks), from contracts/node_modules (`npm ci` in
 * contracts/ installs it). Resolves to {url, rpc(method, params), stop()}.
 */
export async function anvil() {
  const bin = path.join(repo, "contracts", "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil");
  const child = spawn(bin, ["--host", "127.0.0.1", "--port", "0", "--chain-id", "31337"], { stdio: ["ignore", "pipe", "ignore"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("anvil did not say where it listens")), START_TIMEOUT_MS);
    let seen = "";
    child.once("error", reject);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (text) => {
      seen += text;
      const listening = /Listening on (\S+)/.exec(seen);
      if (listening) {
        clearTimeout(timer);
        resolve(`http://${listening[1]}`);
      }
    });
  });
  // Its further output is read and dropped, so that it never blocks on a full pipe.
  child.stdout.resume();
  const rpc = async (method, params = []) => {
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
    const body = await response.json();
    if (body.error) throw new Error(`${method}: ${JSON.stringify(body.error)}`);
    return body.result;
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    await exited;
  };
  return { url, rpc, stop };
}

/**
 * Gives every page of a browser `context` a browser wallet, as an extension would: an EIP-1193
 * provider announced by EIP-6963 (as `name`), holding `address`, one of anvil's development
 * accounts. It answers the account requests itself and hands every other request to the anvil
 * at `rpcUrl`, which signs for that account (personal_sign, eth_signTypedData_v4,
 * eth_sendTransaction): the keys are anvil's, as a real wallet's are its own. Resolves to the
 * requests the page made of it ({method, params}), as they come.
 */
export async function injectWallet(context, { address, rpcUrl, name = "Test Wallet", onChain = null }) {
  const asked = [];
  // `onChain` ({id, known}) starts the wallet on another chain (hex id) that knows the chains in
  // `known`; it answers the chain requests itself, as a wallet does, and reaches anvil (0x7a69)
  // only once switched to it.
  const chain = onChain ? { id: onChain.id, known: new Set(onChain.known ?? [onChain.id]) } : null;
  await context.exposeBinding("gondolaTestWallet", async (_source, { method, params }) => {
    asked.push({ method, params });
    if (method === "eth_requestAccounts" || method === "eth_accounts") return { result: [address] };
    if (chain) {
      if (method === "eth_chainId") return { result: chain.id };
      if (method === "wallet_addEthereumChain") {
        chain.known.add(params[0].chainId);
        return { result: null };
      }
      if (method === "wallet_switchEthereumChain") {
        if (!chain.known.has(params[0].chainId)) return { error: { code: 4902, message: "Unrecognized chain ID" } };
        chain.id = params[0].chainId;
        return { result: null };
      }
      if (chain.id !== "0x7a69") return { error: { code: -32603, message: `the wallet is on chain ${chain.id}` } };
    }
    const response = await fetch(rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params ?? [] }),
    });
    const body = await response.json();
    return body.error ? { error: body.error } : { result: body.result };
  });
  await context.addInitScript(
    ({ name }) => {
      const provider = {
        async request({ method, params }) {
          const answer = await window.gondolaTestWallet({ method, params });
          if (answer.error) throw Object.assign(new Error(answer.error.message), answer.error);
          return answer.result;
        },
        on() {},
        removeListener() {},
      };
      const info = { uuid: "5d3c6f0e-6b7a-4c55-9d59-0c1f7a7e2b11", name, icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E", rdns: "org.gondola.test-wallet" };
      const announce = () => window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: Object.freeze({ info, provider }) }));
      window.addEventListener("eip6963:requestProvider", announce);
      announce();
    },
    { name },
  );
  return asked;
}

/** Runs `gondola chain ARGS` (with `env`: GONDOLA_RPC_URL, GONDOLA_DEPLOYMENT, GONDOLA_WALLET) and returns what it printed. */
export function chainCli(args, env) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("GONDOLA_")));
  return execFileSync(binary, ["chain", ...args], { encoding: "utf8", env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
}

// ---------------------------------------------------------------- the wallet page

/** Does `act` on the wallet page, then waits for the page's answer in the result line `id`: {state, text, transaction}. */
export async function walletOutcome(page, id, act) {
  await page.evaluate((id) => {
    document.getElementById(id).dataset.state = "";
  }, id);
  await act();
  await page.waitForFunction((id) => ["done", "error"].includes(document.getElementById(id).dataset.state), id);
  const result = page.locator(`#${id}`);
  return { state: await result.getAttribute("data-state"), text: await result.textContent(), transaction: await result.getAttribute("data-transaction") };
}

/** Opens the app at a gateway's `url` on its wallet page, and waits for the page to be ready. */
export async function openWalletPage(page, url) {
  await openApp(page, `${url}/#wallet`);
  await page.waitForSelector('#wallet-view[data-state="ready"]', { state: "attached" });
}

/** Connects the browser wallet called `name` on the wallet page, and waits for the balances it reads. */
export async function connectBrowserWallet(page, name = "Test Wallet") {
  await page.getByRole("button", { name: `Connect ${name}` }).click();
  await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
}

/** Presses the wallet page's Refresh and waits for the balances it reads. */
export async function refreshWallet(page) {
  await page.evaluate(() => {
    document.getElementById("wallet-balances").dataset.state = "";
  });
  await page.getByRole("button", { name: "Refresh" }).click();
  await page.waitForSelector('#wallet-balances[data-state="ready"]', { state: "attached" });
}

// ---------------------------------------------------------------- browser

/** Chromium with a fresh profile. Options go to launchPersistentContext. */
export async function launchBrowser({ extraArgs = [], ...options } = {}) {
  const profile = tempDir("profile");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Replies read aloud play with no sound card, as they would with one.
      "--autoplay-policy=no-user-gesture-required",
      ...extraArgs,
    ],
    viewport: { width: 1280, height: 820 },
    acceptDownloads: true,
    ...options,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const dialogs = [];
  const errors = [];
  context.on("page", (other) => other.on("dialog", (dialog) => dialogs.push(dialog.message())));
  page.on("dialog", async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => errors.push(String(error)));
  return { context, page, dialogs, errors, close: () => context.close() };
}

/** Opens the app and waits until it has loaded its chats and models. */
export async function openApp(page, url) {
  await page.goto(url);
  await page.waitForSelector('#app[data-ready="true"]');
}

export function replies(page) {
  return page.locator('article.message[data-role="assistant"]');
}

/** Types `text` in the composer and sends it with Enter. */
export async function send(page, text) {
  await page.locator("#prompt").fill(text);
  await page.locator("#prompt").press("Enter");
}

/** Waits until the last reply is no longer streaming; returns its state. */
export async function lastReplyFinished(page) {
  const last = replies(page).last();
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('article.message[data-role="assistant"]');
    const reply = all[all.length - 1];
    return reply && reply.dataset.state !== "streaming";
  });
  return last.getAttribute("data-state");
}

/** Waits until every write the app started has reached IndexedDB. */
export async function writesSettled(page) {
  await page.waitForSelector('#app[data-pending-writes="0"]', { state: "attached" });
}

/** Sets this chat's settings through its dialog. */
export async function chatSettings(page, { systemPrompt, temperature, topP, maxTokens, includeGatewayPrompt } = {}) {
  await page.getByRole("button", { name: "Chat settings" }).click();
  const dialog = page.locator("#chat-settings-dialog");
  if (systemPrompt !== undefined) await dialog.getByLabel("System prompt", { exact: true }).fill(systemPrompt);
  if (temperature !== undefined) await dialog.getByLabel("Temperature").fill(String(temperature));
  if (topP !== undefined) await dialog.getByLabel("Top p").fill(String(topP));
  if (maxTokens !== undefined) await dialog.getByLabel("Max tokens").fill(String(maxTokens));
  if (includeGatewayPrompt !== undefined) await dialog.getByLabel(/Include the gateway's system prompt/).setChecked(includeGatewayPrompt);
  await dialog.getByRole("button", { name: "Save" }).click();
  await dialog.waitFor({ state: "hidden" });
}

/**
 * What IndexedDB holds for this origin, read from the page: per database and store, each
 * record's id, whether its bytes contain `needle`, and for CryptoKeys their properties.
 */
export function inspectIndexedDb(page, needle = "") {
  return page.evaluate(async (needle) => {
    const request = (req) =>
      new Promise((resolve, reject) => {
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    const text = (value) => {
      if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
        return new TextDecoder("utf-8", { fatal: false }).decode(value);
      }
      if (value instanceof CryptoKey) return "";
      if (value && typeof value === "object") return Object.values(value).map(text).join("\u0000");
      return String(value);
    };
    const result = {};
    for (const { name } of await indexedDB.databases()) {
      const db = await request(indexedDB.open(name));
      result[name] = {};
      for (const store of db.objectStoreNames) {
        const records = await request(db.transaction(store).objectStore(store).getAll());
        result[name][store] = records.map((record) => ({
          id: record.id,
          fields: Object.keys(record).sort(),
          containsNeedle: needle !== "" && text(record).includes(needle),
          key:
            record.key instanceof CryptoKey
              ? { type: record.key.type, extractable: record.key.extractable, algorithm: record.key.algorithm.name, usages: record.key.usages }
              : null,
          ivHex: record.iv ? Array.from(record.iv, (b) => b.toString(16).padStart(2, "0")).join("") : null,
        }));
      }
      db.close();
    }
    return result;
  }, needle);
}

export function artifactPath(name) {
  mkdirSync(artifacts, { recursive: true });
  return path.join(artifacts, name);
}
