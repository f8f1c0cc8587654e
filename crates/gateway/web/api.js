// Talking to the gateway: the model catalogue, streamed chat completions (SSE over fetch, or
// sealed through a relay in private mode, /oblivious.js), the account headers, and what each
// failure means for the person at the keyboard.

/** Something went wrong talking to the gateway. `kind`: network, http, stream or private. */
export class ApiFailure extends Error {
  constructor({ kind, status = 0, code = "", message = "", retryAfter = null, headers = null }) {
    super(message || kind);
    this.kind = kind;
    this.status = status;
    this.code = code;
    this.serverMessage = message;
    this.retryAfter = retryAfter;
    this.headers = headers;
  }
}

/** The user stopped the reply. */
export class Stopped extends Error {
  constructor() {
    super("stopped");
  }
}

function requestHeaders(apiKey, json) {
  const headers = { accept: json ? "application/json" : "text/event-stream" };
  if (json) headers["content-type"] = "application/json";
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  return headers;
}

/** Account figures the gateway may send with a reply: balances and rate-limit budget. */
export function accountHeaders(headers) {
  const pick = (name) => headers.get(name);
  return {
    balanceDiem: pick("x-venice-balance-diem"),
    balanceUsd: pick("x-venice-balance-usd"),
    remainingRequests: pick("x-ratelimit-remaining-requests"),
    limitRequests: pick("x-ratelimit-limit-requests"),
    remainingTokens: pick("x-ratelimit-remaining-tokens"),
    resetRequests: pick("x-ratelimit-reset-requests"),
  };
}

/**
 * The message and code of an API error body (`text`), in either dialect: OpenAI's
 * `{error: {message, code}}` or Venice's `{error, code}`. Empty for anything else.
 */
export function errorFields(text) {
  try {
    const body = JSON.parse(text);
    if (typeof body?.error === "string") return { message: body.error, code: body.code ?? "" };
    if (body?.error) return { message: body.error.message ?? "", code: body.error.code ?? "" };
  } catch {
    // Not JSON (a proxy's error page, say): the status alone tells what happened.
  }
  return { message: "", code: "" };
}

async function failureFrom(response) {
  const { message, code } = errorFields(await response.text().catch(() => ""));
  const retry = Number.parseInt(response.headers.get("retry-after") ?? "", 10);
  return new ApiFailure({
    kind: "http",
    status: response.status,
    code,
    message,
    retryAfter: Number.isFinite(retry) ? retry : null,
    headers: accountHeaders(response.headers),
  });
}

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (init.signal?.aborted) throw new Stopped();
    throw new ApiFailure({ kind: "network", message: String(error?.message ?? error) });
  }
}

/** `GET /v1/models`: the served models, each with its `model_spec`. */
export async function listModels(apiKey) {
  const response = await send("/v1/models", { headers: requestHeaders(apiKey, false), cache: "no-store" });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return Array.isArray(body?.data) ? body.data : [];
}

/** `GET /v1/models?type=image`: the image models served now. */
export async function listImageModels(apiKey) {
  const response = await send("/v1/models?type=image", { headers: requestHeaders(apiKey, false), cache: "no-store" });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return Array.isArray(body?.data) ? body.data : [];
}

/** `GET /v1/image/styles`: the style presets image requests may name. */
export async function listImageStyles() {
  const response = await send("/v1/image/styles", { headers: requestHeaders("", false), cache: "no-store" });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return Array.isArray(body?.data) ? body.data.filter((style) => typeof style === "string") : [];
}

/**
 * `POST /v1/image/generate` (Venice's shape): one PNG of `width` × `height` from `prompt`,
 * with a style preset and seed when given. The image as base64, the provider, the account.
 */
export async function generateImage({ prompt, model, width, height, style, seed, apiKey, relay, signal }) {
  const body = { model, prompt, width, height, format: "png", variants: 1 };
  if (style) body.style_preset = style;
  if (Number.isInteger(seed)) body.seed = seed;
  if (relay) {
    // Private mode: sealed to the image model's providers (or to the gateway, where none takes
    // sealed requests), carried by the relay, paid with tokens.
    let answer;
    try {
      const { privateImage } = await import("/oblivious.js");
      answer = await privateImage({ relay, apiKey, body, signal });
    } catch (error) {
      if (signal?.aborted) throw new Stopped();
      throw privateFailure(error);
    }
    const image = Array.isArray(answer.body?.images) ? answer.body.images[0] : null;
    if (typeof image !== "string") throw new ApiFailure({ kind: "stream", message: "the gateway answered without an image" });
    return {
      image,
      provider: answer.sealed?.provider ?? answer.headers.get("x-gondola-provider"),
      account: accountHeaders(answer.headers),
      sealed: answer.sealed,
    };
  }
  const response = await send("/v1/image/generate", {
    method: "POST",
    headers: requestHeaders(apiKey, true),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failureFrom(response);
  let answer;
  try {
    answer = await response.json();
  } catch (error) {
    if (signal?.aborted) throw new Stopped();
    throw new ApiFailure({ kind: "stream", message: String(error?.message ?? error) });
  }
  const image = Array.isArray(answer?.images) ? answer.images[0] : null;
  if (typeof image !== "string") throw new ApiFailure({ kind: "stream", message: "the gateway answered without an image" });
  return { image, provider: response.headers.get("x-gondola-provider"), account: accountHeaders(response.headers) };
}

/** `GET /v1/models?type=tts`: the speech models served now. */
export async function listVoiceModels(apiKey) {
  const response = await send("/v1/models?type=tts", { headers: requestHeaders(apiKey, false), cache: "no-store" });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return Array.isArray(body?.data) ? body.data : [];
}

/** Longest text `speak` sends (the speech API's limit, in characters). */
export const MAX_SPEECH_CHARS = 4096;

/** `POST /v1/audio/speech`: `text` spoken by `model`'s default voice, as an mp3 Blob. */
export async function speak({ text, model, apiKey, signal }) {
  const input = [...text].slice(0, MAX_SPEECH_CHARS).join("");
  const response = await send("/v1/audio/speech", {
    method: "POST",
    headers: requestHeaders(apiKey, true),
    body: JSON.stringify({ model, input, response_format: "mp3" }),
    signal,
  });
  if (!response.ok) throw await failureFrom(response);
  return await response.blob();
}

/** `GET /v1/models?type=asr`: the transcription models served now. */
export async function listTranscriptionModels(apiKey) {
  const response = await send("/v1/models?type=asr", { headers: requestHeaders(apiKey, false), cache: "no-store" });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return Array.isArray(body?.data) ? body.data : [];
}

/** `POST /v1/audio/transcriptions`: what `audio` (a Blob) says, as text. */
export async function transcribe({ audio, model, apiKey, signal }) {
  const form = new FormData();
  form.append("file", audio, "dictation.webm");
  form.append("model", model);
  form.append("response_format", "json");
  const headers = { accept: "application/json" };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const response = await send("/v1/audio/transcriptions", { method: "POST", headers, body: form, signal });
  if (!response.ok) throw await failureFrom(response);
  const body = await response.json();
  return typeof body?.text === "string" ? body.text.trim() : "";
}

/**
 * The gateway's /app-config.json: the relays its page may send the private mode through
 * (`relays`, from `gateway.relays`) and, in chain mode, where the contracts are (`chain`).
 * An empty object when it cannot be read.
 */
export async function readAppConfig() {
  try {
    const response = await fetch("/app-config.json", { cache: "no-store" });
    if (!response.ok) return {};
    const body = await response.json();
    return body && typeof body === "object" ? body : {};
  } catch {
    return {};
  }
}

/** The relays in an app config. */
export function relaysIn(appConfig) {
  return Array.isArray(appConfig?.relays) ? appConfig.relays.filter((relay) => typeof relay === "string") : [];
}

/** Splits a Server-Sent Events byte stream (as text) into the data of each event. */
export class SseDecoder {
  #buffer = "";

  /** Feeds text; returns the `data` of every event it completes. */
  push(text) {
    this.#buffer += text;
    // A CR at the very end may be half of a CRLF still to come.
    const end = this.#buffer.endsWith("\r") ? this.#buffer.length - 1 : this.#buffer.length;
    const ready = this.#buffer.slice(0, end).replace(/\r\n?/g, "\n");
    this.#buffer = ready + this.#buffer.slice(end);
    const events = [];
    let boundary = this.#buffer.indexOf("\n\n");
    while (boundary >= 0) {
      const block = this.#buffer.slice(0, boundary);
      this.#buffer = this.#buffer.slice(boundary + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5));
      if (data.length > 0) events.push(data.join("\n"));
      boundary = this.#buffer.indexOf("\n\n");
    }
    return events;
  }
}

/** The `data` of each server-sent event of a plain reply, as it arrives. */
async function* plainEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const decoder = new SseDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield* decoder.push(value);
    }
  } finally {
    reader.releaseLock();
  }
}

/** A failure of the private path (/oblivious.js), as the failure the app describes. */
function privateFailure(error) {
  if (error instanceof ApiFailure || error instanceof Stopped) return error;
  if (error?.name !== "PrivateFailure") {
    return new ApiFailure({ kind: "private", message: String(error?.message ?? error) });
  }
  const headers = error.headers ? accountHeaders(error.headers) : null;
  if (error.status > 0 && error.kind === "http") {
    return new ApiFailure({ kind: "http", status: error.status, code: error.code, message: error.message, retryAfter: error.retryAfter, headers });
  }
  return new ApiFailure({ kind: error.kind === "network" || error.kind === "stream" ? error.kind : "private", code: error.code, message: error.message });
}

/**
 * The reply to a chat request sent privately through `relay` (see /oblivious.js, loaded on
 * first use): `{headers, events, sealed}`.
 */
async function openPrivate({ relay, apiKey, body, signal }) {
  try {
    const { privateChat } = await import("/oblivious.js");
    const reply = await privateChat({ relay, apiKey, body, signal });
    return { ...reply, events: guarded(reply.events, signal) };
  } catch (error) {
    if (signal?.aborted) throw new Stopped();
    throw privateFailure(error);
  }
}

/** `events`, with the private path's failures turned into the app's. */
async function* guarded(events, signal) {
  try {
    yield* events;
  } catch (error) {
    if (signal?.aborted) throw new Stopped();
    throw privateFailure(error);
  }
}

/**
 * `POST /v1/chat/completions` with `stream: true`: to the gateway, or, given a `relay`, sealed
 * through it (private mode). Calls `onOpen(provider, account)` when the reply starts and
 * `onDelta({content, reasoning})` for each chunk; resolves with the usage and cost of the final
 * chunk, and `sealed` (`{provider, receipt}`, the provider's checked receipt) for a reply sealed
 * end to end. Throws ApiFailure, or Stopped when `signal` aborts.
 */
export async function streamChat({ body, apiKey, relay = null, signal, onOpen, onDelta }) {
  const request = { ...body, stream: true, stream_options: { include_usage: true } };
  let headers;
  let events;
  let sealed = () => null;
  if (relay) {
    ({ headers, events, sealed } = await openPrivate({ relay, apiKey, body: request, signal }));
  } else {
    const response = await send("/v1/chat/completions", {
      method: "POST",
      headers: requestHeaders(apiKey, true),
      body: JSON.stringify(request),
      signal,
      cache: "no-store",
    });
    if (!response.ok) throw await failureFrom(response);
    headers = response.headers;
    events = plainEvents(response);
  }
  const provider = headers.get("x-gondola-provider");
  const account = accountHeaders(headers);
  onOpen?.(provider, account);
  let usage = null;
  let cost = null;
  let finishReason = null;
  let finished = false;
  try {
    for await (const data of events) {
      if (data === "[DONE]") {
        finished = true;
        continue;
      }
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        throw new ApiFailure({ kind: "stream", message: "The gateway sent an event that is not JSON." });
      }
      if (chunk.error) {
        throw new ApiFailure({ kind: "stream", code: chunk.error.code ?? "", message: chunk.error.message ?? "" });
      }
      if (chunk.usage) usage = chunk.usage;
      if (chunk.cost) cost = chunk.cost;
      const choice = chunk.choices?.[0];
      if (choice) {
        const delta = choice.delta ?? {};
        const content = typeof delta.content === "string" ? delta.content : "";
        const reasoning = typeof delta.reasoning_content === "string" ? delta.reasoning_content : "";
        if (content || reasoning) onDelta({ content, reasoning });
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
    }
  } catch (error) {
    if (signal?.aborted) throw new Stopped();
    if (error instanceof ApiFailure) throw error;
    throw new ApiFailure({ kind: "stream", message: "The connection to the gateway broke during the reply." });
  }
  if (!finished) {
    throw new ApiFailure({ kind: "stream", message: "The reply ended before it was complete." });
  }
  return { provider, account, usage, cost, finishReason, sealed: sealed() };
}

/** What a failure means, in words for the person using the app: {title, detail, action}. */
export function describeFailure(failure, { hasKey = false, relay = null } = {}) {
  if (failure.kind === "network" && relay) {
    return {
      title: "Can't reach the relay",
      detail: `Private mode sends through the relay at ${relay}, which is not answering${failure.serverMessage ? ` (${failure.serverMessage})` : ""}. Try again, pick another relay in Settings, or turn private mode off.`,
      action: "settings",
    };
  }
  if (failure.kind === "private") {
    return {
      title: "Private mode could not send this",
      detail: failure.serverMessage || "The request could not be sealed.",
      action: "settings",
    };
  }
  if (failure.kind === "network") {
    return {
      title: "Can't reach the gateway",
      detail: `Gondola's gateway at ${location.origin} is not answering. Check that it is running (gondola serve), then try again.`,
      action: "retry",
    };
  }
  if (failure.kind === "stream") {
    return {
      title: "The reply was cut short",
      detail: failure.serverMessage || "The provider stopped before finishing. Try again.",
      action: "retry",
    };
  }
  const said = failure.serverMessage ? ` The gateway said: “${failure.serverMessage}”` : "";
  switch (failure.status) {
    case 401:
      return hasKey
        ? {
            title: "API key not accepted",
            detail: `This gateway did not accept the API key saved in Settings. Check it and try again.${said}`,
            action: "settings",
          }
        : {
            title: "API key needed",
            detail: "This gateway only serves people with an API key. Add yours in Settings.",
            action: "settings",
          };
    case 402:
      return {
        title: "Insufficient balance",
        detail: `Your balance does not cover this request. Top up your DIEM or USD balance, or pick a cheaper model.${said}`,
        action: "settings",
      };
    case 403:
      return { title: "Not allowed", detail: `Your API key may not do this.${said}`, action: "settings" };
    case 429: {
      const wait = failure.retryAfter ? ` Try again in ${failure.retryAfter} s.` : " Wait a moment and try again.";
      return {
        title: "Too many requests",
        detail: `You have reached this gateway's rate limit.${wait}`,
        action: "retry",
      };
    }
    case 503:
      return {
        title: "Model unavailable",
        detail: `${failure.serverMessage || "No provider can serve this model right now."} Try again shortly, or pick another model.`,
        action: "retry",
      };
    default:
      return {
        title: failure.status >= 500 ? `The gateway failed (${failure.status})` : `Request refused (${failure.status})`,
        detail: failure.serverMessage || "Something went wrong. Try again.",
        action: "retry",
      };
  }
}
