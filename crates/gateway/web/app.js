// Gondola's chat page: conversations, the composer, streaming replies, settings and data, and
// the way to the wallet page (wallet.js, at #wallet).
//
// All state lives in this page and in the browser's IndexedDB (encrypted, see store.js);
// the gateway is only asked for models and replies, like any other API client. Every piece of
// text a model or a person wrote is put into the page as text, never as markup.

import { ApiFailure, Stopped, describeFailure, generateImage, listImageModels, listImageStyles, listModels, listTranscriptionModels, listVoiceModels, readAppConfig, relaysIn, speak, streamChat, transcribe } from "/api.js";
import { formatUsd, parseAmount } from "/amounts.js";
import { renderMarkdown } from "/markdown.js";
import { Store, canEncrypt, exportDocument, parseExport } from "/store.js";
import { WalletPage } from "/wallet.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_TITLE = "New chat";
const TITLE_LENGTH = 48;
const NEAR_BOTTOM_PX = 80;
/** Shown in place of messages in an empty chat; detached from the page while a chat has some. */
const emptyState = $("empty-state");
const modelCard = $("model-card");

const state = {
  /** The encrypted store, or null when this context cannot store (chats then live in memory). */
  store: null,
  /** Every chat by id: stored ones and incognito ones. */
  chats: new Map(),
  /** The chat on screen (possibly a draft not yet in `chats`). */
  current: null,
  models: [],
  /** The speech model replies are read aloud with, when the gateway serves one. */
  voiceModel: null,
  /** The transcription model dictation goes to, when the gateway serves one. */
  transcriptionModel: null,
  /** `apiKeyAccount`: the wallet address `apiKey` was minted for on the wallet page, if it was. */
  /** `privateRelay`: the relay private mode sends through; empty when private mode is off. */
  prefs: { apiKey: "", apiKeyAccount: null, theme: "system", model: null, privateRelay: "" },
  /** The relays this gateway lets the page send through (its `gateway.relays`). */
  relays: [],
  /** The wallet page, made at start. */
  wallet: null,
  /** The reply being streamed: {chat, message, controller}. */
  streaming: null,
  search: "",
  renameId: null,
  pendingWrites: 0,
  saveChains: new Map(),
  liveFrame: 0,
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, className, onClick, ariaLabel) {
  const node = element("button", className, label);
  node.type = "button";
  if (ariaLabel) node.setAttribute("aria-label", ariaLabel);
  node.addEventListener("click", onClick);
  return node;
}

function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function newChat({ incognito = false } = {}) {
  const now = Date.now();
  return {
    id: newId(),
    title: DEFAULT_TITLE,
    created_at: now,
    updated_at: now,
    model: null,
    settings: { system_prompt: "", temperature: null, top_p: null, max_tokens: null, include_venice_system_prompt: true },
    messages: [],
    incognito,
  };
}

function titleFrom(text) {
  const line = text.trim().split("\n")[0].trim();
  return line.length > TITLE_LENGTH ? `${line.slice(0, TITLE_LENGTH - 1)}…` : line || DEFAULT_TITLE;
}

// ---------------------------------------------------------------- storage

function storedCopy(chat) {
  const { incognito: _incognito, ...rest } = chat;
  return {
    ...rest,
    messages: chat.messages.map(({ editing: _editing, ...message }) => message),
  };
}

function setPendingWrites(delta) {
  state.pendingWrites += delta;
  $("app").dataset.pendingWrites = String(state.pendingWrites);
}

/** Saves `chat` (never an incognito one), in order with its earlier saves. */
function persist(chat) {
  // A chat deleted while its reply was still streaming must not be written back.
  if (!state.store || chat.incognito || !state.chats.has(chat.id)) return Promise.resolve();
  const store = state.store;
  const copy = storedCopy(chat);
  setPendingWrites(1);
  const previous = state.saveChains.get(chat.id) ?? Promise.resolve();
  const next = previous
    .then(() => store.saveChat(copy))
    .catch((error) => showBanner("Could not save the chat", String(error?.message ?? error)))
    .finally(() => setPendingWrites(-1));
  state.saveChains.set(chat.id, next);
  return next;
}

async function savePrefs() {
  if (!state.store) return;
  setPendingWrites(1);
  try {
    await state.store.savePrefs({ ...state.prefs });
  } finally {
    setPendingWrites(-1);
  }
}

// ---------------------------------------------------------------- theme

function effectiveTheme() {
  if (state.prefs.theme === "light" || state.prefs.theme === "dark") return state.prefs.theme;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function applyTheme() {
  const root = document.documentElement;
  if (state.prefs.theme === "light" || state.prefs.theme === "dark") root.dataset.theme = state.prefs.theme;
  else delete root.dataset.theme;
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  $("theme-toggle").setAttribute("aria-label", `Switch to ${next} theme`);
}

// ---------------------------------------------------------------- banner and account

function showBanner(title, detail, action = null, source = "") {
  $("banner").dataset.source = source;
  $("banner-title").textContent = title;
  $("banner-detail").textContent = detail;
  const actionButton = $("banner-action");
  actionButton.hidden = action !== "settings";
  $("banner").hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

/** A balance header's exact decimal ("0.999876") cut to the cent, never rounded up (a balance
 * is not overstated); anything that is not a plain decimal shows as sent. */
function toCents(text) {
  try {
    return formatUsd(parseAmount(text)).slice(1);
  } catch {
    return text;
  }
}

function showAccount(account) {
  if (!account) return;
  const parts = [];
  if (account.balanceDiem !== null) parts.push(`${toCents(account.balanceDiem)} DIEM`);
  if (account.balanceUsd !== null) parts.push(`$${toCents(account.balanceUsd)}`);
  if (parts.length) parts.unshift("Balance");
  if (account.remainingRequests !== null) {
    const of = account.limitRequests !== null ? ` of ${account.limitRequests}` : "";
    parts.push(`${account.remainingRequests}${of} requests left this minute`);
  }
  $("account").textContent = parts.length ? parts.join(" · ").replace("Balance · ", "Balance ") : "";
}

// ---------------------------------------------------------------- models

function privacyLabel(privacy) {
  if (privacy === "private") return { text: "Private", title: "Served by providers under this gateway's policy; nothing you write is kept." };
  if (privacy === "anonymized") return { text: "Anonymized", title: "The provider may keep content, but never learns who sent it." };
  return { text: privacy || "Unknown privacy", title: "" };
}

function formatPrice(value) {
  const number = Number(value);
  if (!Number.isFinite(number)) return "?";
  return `$${number < 0.01 && number > 0 ? number.toPrecision(2) : number.toFixed(2)}`;
}

function modelChips(model) {
  const spec = model.model_spec ?? {};
  const chips = [];
  const privacy = privacyLabel(spec.privacy);
  chips.push({ text: privacy.text, title: privacy.title, kind: "privacy" });
  if (spec.offline) chips.push({ text: "Offline", title: "No provider serves this model right now.", kind: "warning" });
  else if (spec.providers) chips.push({ text: `${spec.providers} provider${spec.providers === 1 ? "" : "s"}`, title: "Independent provider nodes serving it now" });
  const traits = spec.traits ?? [];
  for (const name of traits.slice(0, 3)) chips.push({ text: name, title: "Trait: ask for this model by this name", kind: "trait" });
  if (traits.length > 3) chips.push({ text: `+${traits.length - 3} traits`, title: traits.slice(3).join(", "), kind: "trait" });
  const capabilities = spec.capabilities ?? {};
  const named = [
    ["supportsReasoning", "Reasoning"],
    ["supportsResponseSchema", "JSON schema"],
    ["supportsFunctionCalling", "Tools"],
    ["supportsVision", "Vision"],
    ["optimizedForCode", "Code"],
    ["supportsWebSearch", "Web search"],
    ["supportsE2EE", "End-to-end encrypted"],
    ["supportsTeeAttestation", "TEE attested"],
  ];
  for (const [key, text] of named) if (capabilities[key]) chips.push({ text, title: "Capability", kind: "capability" });
  if (capabilities.quantization && !["unknown", "not-available"].includes(capabilities.quantization)) chips.push({ text: capabilities.quantization, title: "Quantization" });
  const context = spec.availableContextTokens ?? model.context_length;
  if (context) chips.push({ text: `${Number(context).toLocaleString("en")} tokens context`, title: "Context window" });
  const pricing = spec.pricing;
  if (pricing?.generation) chips.push({ text: `${formatPrice(pricing.generation.usd)} per image`, title: "Price of each image" });
  if (pricing?.input && pricing?.output) {
    chips.push({
      text: `${formatPrice(pricing.input.usd)} in / ${formatPrice(pricing.output.usd)} out per 1M tokens`,
      title: "Price per million tokens",
    });
  }
  return chips;
}

function renderChips(container, model) {
  container.replaceChildren();
  if (!model) return;
  for (const chip of modelChips(model)) {
    const node = element("span", `chip${chip.kind ? ` chip-${chip.kind}` : ""}`, chip.text);
    if (chip.title) node.title = chip.title;
    container.append(node);
  }
}

function selectedModel() {
  return state.models.find((model) => model.id === $("model-select").value) ?? null;
}

/** Whether `id` names an image model: a chat with one makes an image of each message. */
function isImageModel(id) {
  return state.models.some((model) => model.id === id && model.type === "image");
}

function defaultModelId() {
  const byTrait = state.models.find((model) => (model.model_spec?.traits ?? []).includes("default"));
  const preferred = state.models.find((model) => model.id === state.prefs.model);
  return (preferred ?? byTrait ?? state.models[0])?.id ?? "";
}

function renderModelPicker() {
  const select = $("model-select");
  const chat = state.current;
  const wanted = chat?.model || defaultModelId();
  select.replaceChildren();
  for (const model of state.models) {
    const name = model.model_spec?.name && model.model_spec.name !== model.id ? `${model.model_spec.name} (${model.id})` : model.id;
    const kind = model.type === "image" ? `${name} — images` : name;
    const option = element("option", null, model.model_spec?.offline ? `${kind} — offline` : kind);
    option.value = model.id;
    select.append(option);
  }
  if (wanted && !state.models.some((model) => model.id === wanted)) {
    const option = element("option", null, `${wanted} — not served here`);
    option.value = wanted;
    select.append(option);
  }
  if (select.options.length === 0) {
    const option = element("option", null, "No models available");
    option.value = "";
    select.append(option);
  }
  select.value = wanted;
  select.disabled = state.models.length === 0 && !wanted;
  const model = selectedModel();
  renderChips($("model-summary"), model);
  renderChips(modelCard, model);
}

async function loadModels() {
  // A transcription model, if the gateway serves one: the composer gets a "Dictate" button.
  listTranscriptionModels(state.prefs.apiKey)
    .then((models) => {
      state.transcriptionModel = models.find((model) => !model.model_spec?.offline)?.id ?? null;
      renderComposer();
    })
    .catch(() => {
      state.transcriptionModel = null;
    });
  // A voice, if the gateway serves one: replies get a "Read aloud" button.
  listVoiceModels(state.prefs.apiKey)
    .then((voices) => {
      state.voiceModel = voices.find((model) => !model.model_spec?.offline)?.id ?? null;
      renderMessages();
    })
    .catch(() => {
      state.voiceModel = null;
    });
  // The style presets image models take, once.
  if ($("image-style").options.length <= 1) {
    listImageStyles()
      .then((styles) => {
        for (const style of styles) {
          const option = element("option", null, style);
          option.value = style;
          $("image-style").append(option);
        }
      })
      .catch(() => {});
  }
  try {
    // Chat models, then the image models (a chat with one makes images).
    const [text, images] = await Promise.all([listModels(state.prefs.apiKey), listImageModels(state.prefs.apiKey).catch(() => [])]);
    state.models = [...text, ...images];
    if ($("banner").dataset.source === "models") hideBanner();
  } catch (error) {
    state.models = [];
    if (error instanceof ApiFailure) {
      const { title, detail, action } = describeFailure(error, { hasKey: Boolean(state.prefs.apiKey) });
      showBanner(title, detail, action, "models");
    }
  }
  renderModelPicker();
}

// ---------------------------------------------------------------- chat list

function listedChats() {
  const query = state.search.trim().toLowerCase();
  return [...state.chats.values()]
    .filter((chat) => chat.messages.length > 0)
    .filter(
      (chat) =>
        !query ||
        chat.title.toLowerCase().includes(query) ||
        chat.messages.some((message) => message.content.toLowerCase().includes(query)),
    )
    .sort((a, b) => b.updated_at - a.updated_at);
}

function renderChatList() {
  const list = $("chat-list");
  list.replaceChildren();
  const chats = listedChats();
  for (const chat of chats) {
    const item = element("li", "chat-item");
    item.dataset.chatId = chat.id;
    if (chat.incognito) item.dataset.incognito = "true";
    if (state.current?.id === chat.id) item.setAttribute("aria-current", "true");
    if (state.renameId === chat.id) {
      const input = element("input", "rename-input");
      input.value = chat.title;
      input.setAttribute("aria-label", "New name for the chat");
      let finished = false;
      const finish = (commit) => {
        if (finished) return;
        finished = true;
        state.renameId = null;
        const title = input.value.trim();
        if (commit && title && title !== chat.title) {
          chat.title = title;
          persist(chat);
        }
        renderChatList();
        renderHeader();
      };
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          finish(true);
        } else if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          finish(false);
        }
      });
      input.addEventListener("blur", () => finish(true));
      item.append(input);
      list.append(item);
      queueMicrotask(() => {
        input.focus();
        input.select();
      });
      continue;
    }
    const open = button("", "chat-open", () => openChat(chat.id));
    open.append(element("span", "chat-name", chat.title));
    if (chat.incognito) open.append(element("span", "badge incognito-badge", "Incognito"));
    open.title = chat.title;
    item.append(
      open,
      button("✎", "icon-button", () => startRename(chat.id), `Rename chat “${chat.title}”`),
      button("✕", "icon-button", () => deleteChat(chat.id), `Delete chat “${chat.title}”`),
    );
    list.append(item);
  }
  $("chat-list-empty").hidden = chats.length > 0;
  $("chat-list-empty").textContent = state.search ? "No chat matches." : "No chats yet.";
}

function startRename(id) {
  state.renameId = id;
  renderChatList();
}

function confirmAction(title, detail, okLabel) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-detail").textContent = detail;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function deleteChat(id) {
  const chat = state.chats.get(id);
  if (!chat) return;
  if (!(await confirmAction("Delete this chat?", `“${chat.title}” will be deleted from this browser.`, "Delete"))) return;
  if (state.streaming?.chat === chat) state.streaming.controller.abort();
  state.chats.delete(id);
  if (state.store && !chat.incognito) {
    setPendingWrites(1);
    const previous = state.saveChains.get(id) ?? Promise.resolve();
    await previous.then(() => state.store.deleteChat(id)).finally(() => setPendingWrites(-1));
    state.saveChains.delete(id);
  }
  if (state.current?.id === id) state.current = newChat();
  renderAll();
}

function openChat(id) {
  const chat = state.chats.get(id);
  if (!chat) return;
  showChatView();
  state.current = chat;
  closeSidebar();
  renderAll();
  $("prompt").focus();
}

function startNewChat({ incognito = false } = {}) {
  showChatView();
  const chat = newChat({ incognito });
  chat.model = $("model-select").value || null;
  state.current = chat;
  closeSidebar();
  renderAll();
  $("prompt").focus();
}

// ---------------------------------------------------------------- messages

/** `text` split into its reasoning (`<think>…</think>`) and its answer. */
export function splitThinking(text) {
  const open = text.indexOf("<think>");
  const close = text.indexOf("</think>");
  if (close >= 0 && (open < 0 || close < open)) {
    // The template opened the block in the prompt; the reply starts inside it.
    const rest = splitThinking(text.slice(close + 8));
    return { reasoning: text.slice(0, close) + rest.reasoning, answer: rest.answer, thinking: rest.thinking };
  }
  if (open < 0) return { reasoning: "", answer: text, thinking: false };
  if (close < 0) return { reasoning: text.slice(open + 7), answer: text.slice(0, open), thinking: true };
  const rest = splitThinking(text.slice(close + 8));
  return {
    reasoning: text.slice(open + 7, close) + rest.reasoning,
    answer: text.slice(0, open) + rest.answer,
    thinking: rest.thinking,
  };
}

function formatCost(usd) {
  const number = Number(usd);
  if (!Number.isFinite(number)) return null;
  if (number === 0) return "$0";
  if (number >= 0.01) return `$${number.toFixed(4)}`;
  // Two significant digits, written out: $0.0000032 rather than $3.2e-6.
  return `$${number.toFixed(Math.min(18, 1 - Math.floor(Math.log10(number))))}`;
}

function metaLine(message) {
  const meta = message.meta ?? {};
  const line = element("div", "message-meta");
  const add = (field, text, title) => {
    if (text === null || text === undefined || text === "") return;
    const span = element("span", null, text);
    span.dataset.field = field;
    if (title) span.title = title;
    line.append(span);
  };
  add("model", meta.model, "Model");
  add("provider", meta.provider, "Provider that served this reply (x-gondola-provider)");
  if (meta.prompt_tokens !== undefined && meta.completion_tokens !== undefined) {
    add("tokens", `${meta.prompt_tokens} prompt · ${meta.completion_tokens} completion tokens`, "Usage reported by the gateway");
  }
  if (meta.tokens_per_second) add("speed", `${meta.tokens_per_second.toFixed(1)} tokens/s`, "Completion tokens per second after the first token");
  // The cost comes split by what paid it (DIEM allowance, dollars); a DIEM is worth a dollar.
  const total = Number(meta.cost_usd ?? 0) + Number(meta.cost_diem ?? 0);
  add("cost", formatCost(total), `Cost: ${meta.cost_diem ?? 0} DIEM + ${meta.cost_usd ?? 0} USD`);
  if (meta.sealed) {
    add(
      "privacy",
      "sealed · receipt verified",
      `Sealed to ${meta.sealed.provider} and sent through ${meta.relay}. The provider signed a receipt over this request (SHA-256 ${meta.sealed.request_sha256}) and this reply (SHA-256 ${meta.sealed.response_sha256}), ${meta.sealed.model} ${meta.sealed.quantization}; it was checked against the provider's registered key.`,
    );
  } else if (meta.relay) {
    add("privacy", "sent through the relay", `Sealed to the gateway and sent through ${meta.relay}; no provider of this model takes requests sealed to it.`);
  }
  return line;
}

function isLastAssistant(chat, message) {
  const last = chat.messages[chat.messages.length - 1];
  return last === message && message.role === "assistant";
}

function messageView(chat, message) {
  const article = element("article", `message ${message.role}`);
  article.dataset.role = message.role;
  article.dataset.messageId = message.id;
  article.dataset.state = message.state ?? "done";
  if (message.state === "streaming") article.setAttribute("aria-busy", "true");
  article.setAttribute("aria-label", message.role === "user" ? "Your message" : "Reply");
  article.append(element("div", "message-role", message.role === "user" ? "You" : "Gondola"));
  const busy = state.streaming !== null;

  if (message.role === "user") {
    if (message.editing) {
      const editor = element("textarea", "edit-input");
      editor.value = message.content;
      editor.setAttribute("aria-label", "Edit your message");
      editor.rows = Math.min(12, message.content.split("\n").length + 1);
      const save = button("Save & send", "button primary", () => resend(chat, message, editor.value));
      const cancel = button("Cancel", "button", () => {
        message.editing = false;
        renderMessages();
      });
      editor.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          save.click();
        } else if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          cancel.click();
        }
      });
      const actions = element("div", "message-actions");
      actions.append(cancel, save);
      article.append(editor, actions);
      queueMicrotask(() => editor.focus());
      return article;
    }
    article.append(element("div", "message-body plain", message.content));
    const actions = element("div", "message-actions");
    const edit = button("Edit", "button small ghost", () => {
      message.editing = true;
      renderMessages();
    });
    edit.disabled = busy;
    actions.append(edit, copyButton(message.content));
    article.append(actions);
    return article;
  }

  const { reasoning: inlineReasoning, answer, thinking } = splitThinking(message.content);
  const reasoning = (message.reasoning ?? "") + inlineReasoning;
  if (reasoning.trim()) {
    const details = element("details", "reasoning");
    const streamingThoughts = message.state === "streaming" && (thinking || !answer);
    details.append(element("summary", null, streamingThoughts ? "Thinking…" : "Reasoning"));
    const body = element("div", "markdown");
    body.append(renderMarkdown(reasoning.trim()));
    details.append(body);
    article.append(details);
  }
  for (const image of message.images ?? []) {
    const figure = element("figure", "generated");
    const picture = element("img");
    picture.src = `data:image/${image.format};base64,${image.data}`;
    picture.alt = `Image made from: ${image.prompt}`;
    picture.width = image.width;
    picture.height = image.height;
    const save = element("a", "button small", "Download");
    save.href = picture.src;
    save.download = `gondola-${image.seed ?? "image"}.${image.format}`;
    const caption = element("figcaption", "message-meta", [image.width && `${image.width}×${image.height}`, image.style, image.seed && `seed ${image.seed}`].filter(Boolean).join(" · "));
    figure.append(picture, caption, save);
    article.append(figure);
  }
  const body = element("div", "message-body markdown");
  body.append(renderMarkdown(answer));
  if (message.state === "streaming" && !answer && !reasoning) body.append(element("span", "typing", "…"));
  article.append(body);
  if (message.state === "stopped") article.append(element("p", "message-note", "Stopped."));
  if (message.error) {
    const box = element("div", "message-error");
    box.setAttribute("role", "alert");
    box.append(element("strong", null, message.error.title), element("p", null, message.error.detail));
    if (message.error.action === "settings") box.append(button("Open settings", "button small", openSettings));
    article.append(box);
  }
  if (message.state !== "streaming") article.append(metaLine(message));
  if (message.state !== "streaming") {
    const actions = element("div", "message-actions");
    if (answer) actions.append(copyButton(answer));
    // Not in private mode: the text would reach the gateway unsealed.
    // What is read is the text as shown, not the Markdown behind it.
    if (answer && state.voiceModel && !privateRelay()) actions.append(readAloudButton(() => body.innerText.trim()));
    if (isLastAssistant(chat, message)) {
      const again = button("Regenerate", "button small ghost", () => regenerate(chat));
      again.disabled = busy;
      actions.append(again);
    }
    article.append(actions);
  }
  return article;
}

/** The audio playing now, and how to stop it (one reply is read at a time). */
let reading = null;

function stopReading() {
  if (!reading) return;
  reading.controller.abort();
  reading.audio?.pause();
  if (reading.url) URL.revokeObjectURL(reading.url);
  reading.button.textContent = "Read aloud";
  reading = null;
}

/** A button that reads `shownText()` (called when clicked) in the gateway's voice. */
function readAloudButton(shownText) {
  const read = button("Read aloud", "button small ghost", async () => {
    if (reading?.button === read) {
      stopReading();
      return;
    }
    stopReading();
    const current = { button: read, controller: new AbortController(), audio: null, url: null };
    reading = current;
    read.textContent = "Stop reading";
    try {
      const blob = await speak({ text: shownText(), model: state.voiceModel, apiKey: state.prefs.apiKey, signal: current.controller.signal });
      if (reading !== current) return;
      current.url = URL.createObjectURL(blob);
      current.audio = new Audio(current.url);
      current.audio.addEventListener("ended", () => {
        if (reading === current) stopReading();
      });
      await current.audio.play();
    } catch (error) {
      if (reading !== current) return;
      stopReading();
      if (!(error instanceof Stopped)) {
        read.textContent = "Speech failed";
        setTimeout(() => {
          read.textContent = "Read aloud";
        }, 1500);
      }
    }
  });
  read.classList.add("read-aloud");
  return read;
}

function copyButton(text) {
  const copy = button("Copy", "button small ghost", async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => {
      copy.textContent = "Copy";
    }, 1500);
  });
  return copy;
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function renderMessages() {
  const box = $("messages");
  const chat = state.current;
  if (!chat || chat.messages.length === 0) {
    box.replaceChildren(emptyState);
    return;
  }
  box.replaceChildren(...chat.messages.map((message) => messageView(chat, message)));
  scrollToBottom();
}

/** Redraws only the reply being streamed, at most once a frame. */
function scheduleLiveRender() {
  if (state.liveFrame) return;
  state.liveFrame = requestAnimationFrame(() => {
    state.liveFrame = 0;
    const live = state.streaming;
    if (!live || live.chat !== state.current) return;
    const old = $("messages").querySelector(`[data-message-id="${live.message.id}"]`);
    if (!old) return;
    const follow = nearBottom();
    const wasOpen = old.querySelector("details")?.open ?? false;
    const fresh = messageView(live.chat, live.message);
    const details = fresh.querySelector("details");
    if (details) details.open = wasOpen;
    old.replaceWith(fresh);
    if (follow) scrollToBottom();
  });
}

/** The relay private mode sends through, or null when it is off (or the relay is no longer listed). */
function privateRelay() {
  const relay = state.prefs.privateRelay;
  return relay && state.relays.includes(relay) ? relay : null;
}

function renderHeader() {
  const chat = state.current;
  $("chat-title").textContent = chat?.title ?? DEFAULT_TITLE;
  $("incognito-badge").hidden = !chat?.incognito;
  $("private-badge").hidden = privateRelay() === null;
  $("main").dataset.incognito = chat?.incognito ? "true" : "false";
  document.title = chat && chat.title !== DEFAULT_TITLE ? `${chat.title} · Gondola` : "Gondola";
}

/** How often a recording hands over what it has. */
const DICTATION_SLICE_MS = 500;

/** The recording in progress: {recorder, stream, chunks}. */
let dictation = null;

/** Records from the microphone until pressed again, then puts what was said in the composer. */
async function toggleDictation() {
  const control = $("dictate");
  if (dictation) {
    dictation.recorder.stop();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch {
    control.textContent = "No microphone";
    setTimeout(() => (control.textContent = "Dictate"), 1500);
    return;
  }
  const recorder = new MediaRecorder(stream);
  const current = { recorder, stream, chunks: [] };
  dictation = current;
  recorder.addEventListener("dataavailable", (event) => {
    if (event.data.size > 0) current.chunks.push(event.data);
    // Half-second pieces: how much is recorded shows on the button.
    control.dataset.recordedMs = String(current.chunks.length * DICTATION_SLICE_MS);
  });
  recorder.addEventListener("stop", async () => {
    for (const track of stream.getTracks()) track.stop();
    dictation = null;
    control.textContent = "Transcribing…";
    control.disabled = true;
    try {
      const audio = new Blob(current.chunks, { type: recorder.mimeType || "audio/webm" });
      const text = await transcribe({ audio, model: state.transcriptionModel, apiKey: state.prefs.apiKey });
      const prompt = $("prompt");
      prompt.value = prompt.value ? `${prompt.value} ${text}` : text;
      autosize();
      prompt.focus();
      control.textContent = "Dictate";
    } catch {
      control.textContent = "Dictation failed";
      setTimeout(() => (control.textContent = "Dictate"), 1500);
    } finally {
      control.disabled = false;
    }
  });
  control.dataset.recordedMs = "0";
  recorder.start(DICTATION_SLICE_MS);
  control.textContent = "Stop dictating";
}

function renderComposer() {
  const streaming = state.streaming !== null;
  const here = streaming && state.streaming.chat === state.current;
  $("stop").hidden = !here;
  $("send").hidden = here;
  $("send").disabled = streaming;
  // Not in private mode: the recording would reach the gateway unsealed.
  $("dictate").hidden = !state.transcriptionModel || !window.MediaRecorder || Boolean(privateRelay());
  const images = isImageModel($("model-select").value);
  $("image-options").hidden = !images;
  const placeholder = images ? "Describe an image" : "Message Gondola";
  $("prompt").placeholder = state.current?.incognito ? `${placeholder} (incognito: not saved)` : placeholder;
}

function renderAll() {
  renderHeader();
  renderChatList();
  renderModelPicker();
  renderMessages();
  renderComposer();
}

// ---------------------------------------------------------------- sending

function requestBody(chat, upTo) {
  const messages = [];
  const settings = chat.settings ?? {};
  if (settings.system_prompt?.trim()) messages.push({ role: "system", content: settings.system_prompt });
  for (const message of chat.messages) {
    if (message === upTo) break;
    if (message.role === "user") messages.push({ role: "user", content: message.content });
    else {
      const { answer } = splitThinking(message.content);
      if (answer.trim() && message.state !== "error") messages.push({ role: "assistant", content: answer });
    }
  }
  const body = { model: chat.model || $("model-select").value || "default", messages };
  if (typeof settings.temperature === "number") body.temperature = settings.temperature;
  if (typeof settings.top_p === "number") body.top_p = settings.top_p;
  if (typeof settings.max_tokens === "number") body.max_tokens = settings.max_tokens;
  body.venice_parameters = { include_venice_system_prompt: settings.include_venice_system_prompt !== false };
  return body;
}

function touch(chat) {
  chat.updated_at = Date.now();
}

/** What the image options ask for: size, style and seed (a random one when none is given, so
 * that the image can be made again). */
function imageOptions() {
  const [width, height] = $("image-size").value.split("x").map(Number);
  const seedText = $("image-seed").value.trim();
  const typed = Number.parseInt(seedText, 10);
  const seed = seedText && Number.isInteger(typed) && typed >= 1 && typed <= 999999999 ? typed : 1 + (crypto.getRandomValues(new Uint32Array(1))[0] % 999999999);
  return { width, height, style: $("image-style").value || null, seed };
}

/** An image for the chat's last message, from its image model. */
async function imageReply(chat, message) {
  const prompt = [...chat.messages].reverse().find((item) => item.role === "user")?.content ?? "";
  const options = imageOptions();
  // In private mode the request is sealed to the model's providers (their receipt checked) and
  // carried by the relay; where none takes sealed requests, sealed to the gateway alone.
  const relay = privateRelay();
  const controller = state.streaming.controller;
  const result = await generateImage({ prompt, model: chat.model, ...options, apiKey: state.prefs.apiKey, relay, signal: controller.signal });
  showAccount(result.account);
  message.images = [{ format: "png", data: result.image, prompt, width: options.width, height: options.height, style: options.style, seed: options.seed }];
  message.meta = {
    provider: result.provider,
    model: chat.model,
    relay,
    sealed: result.sealed
      ? {
          provider: result.sealed.provider,
          model: result.sealed.receipt?.model,
          quantization: result.sealed.receipt?.quantization,
          request_sha256: result.sealed.receipt?.request_sha256,
          response_sha256: result.sealed.receipt?.response_sha256,
        }
      : null,
  };
}

async function reply(chat) {
  const message = { id: newId(), role: "assistant", content: "", reasoning: "", state: "streaming" };
  if (isImageModel(chat.model)) return makeImage(chat, message);
  chat.messages.push(message);
  touch(chat);
  const controller = new AbortController();
  state.streaming = { chat, message, controller };
  renderAll();
  persist(chat);
  const started = performance.now();
  let firstTokenAt = null;
  const relay = privateRelay();
  try {
    const result = await streamChat({
      body: requestBody(chat, message),
      apiKey: state.prefs.apiKey,
      relay,
      signal: controller.signal,
      onOpen: (provider, account) => {
        message.meta = { provider, model: chat.model, relay };
        showAccount(account);
      },
      onDelta: ({ content, reasoning }) => {
        firstTokenAt ??= performance.now();
        message.content += content;
        message.reasoning += reasoning;
        scheduleLiveRender();
      },
    });
    const ended = performance.now();
    const usage = result.usage ?? {};
    const decoding = firstTokenAt === null ? 0 : (ended - firstTokenAt) / 1000;
    message.meta = {
      ...message.meta,
      provider: result.provider,
      prompt_tokens: usage.prompt_tokens,
      completion_tokens: usage.completion_tokens,
      // Too short a reply to time says nothing about speed.
      tokens_per_second: usage.completion_tokens > 1 && decoding >= 0.05 ? usage.completion_tokens / decoding : null,
      cost_usd: result.cost?.usd,
      cost_diem: result.cost?.diem,
      first_token_ms: firstTokenAt === null ? null : Math.round(firstTokenAt - started),
      finish_reason: result.finishReason,
      sealed: result.sealed
        ? {
            provider: result.sealed.provider,
            model: result.sealed.receipt?.model,
            quantization: result.sealed.receipt?.quantization,
            request_sha256: result.sealed.receipt?.request_sha256,
            response_sha256: result.sealed.receipt?.response_sha256,
          }
        : null,
    };
    message.state = "done";
  } catch (error) {
    if (error instanceof Stopped) {
      message.state = "stopped";
    } else if (error instanceof ApiFailure) {
      message.state = "error";
      message.error = { ...describeFailure(error, { hasKey: Boolean(state.prefs.apiKey), relay }), status: error.status, code: error.code };
      if (error.headers) showAccount(error.headers);
    } else {
      message.state = "error";
      message.error = { title: "Something went wrong", detail: String(error?.message ?? error), action: "retry" };
    }
  } finally {
    if (state.liveFrame) cancelAnimationFrame(state.liveFrame);
    state.liveFrame = 0;
    state.streaming = null;
    touch(chat);
    persist(chat);
    if (state.chats.has(chat.id) || state.current === chat) renderAll();
  }
}

/** `reply` for an image model: the image, or what went wrong, in the reply's place. */
async function makeImage(chat, message) {
  chat.messages.push(message);
  touch(chat);
  const controller = new AbortController();
  state.streaming = { chat, message, controller };
  renderAll();
  try {
    await imageReply(chat, message);
    message.state = "done";
  } catch (error) {
    if (error instanceof Stopped || controller.signal.aborted) {
      message.state = "stopped";
    } else if (error instanceof ApiFailure) {
      message.state = "error";
      message.error = { ...describeFailure(error, { hasKey: Boolean(state.prefs.apiKey), relay: privateRelay() }), status: error.status, code: error.code };
      if (error.headers) showAccount(error.headers);
    } else {
      message.state = "error";
      message.error = { title: "Something went wrong", detail: String(error?.message ?? error), action: "retry" };
    }
  } finally {
    state.streaming = null;
    touch(chat);
    persist(chat);
    if (state.chats.has(chat.id) || state.current === chat) renderAll();
  }
}

async function send(text) {
  if (state.streaming || !text.trim()) return;
  const chat = state.current;
  chat.model = $("model-select").value || chat.model;
  chat.messages.push({ id: newId(), role: "user", content: text });
  if (chat.title === DEFAULT_TITLE) chat.title = titleFrom(text);
  state.chats.set(chat.id, chat);
  $("prompt").value = "";
  autosize();
  await reply(chat);
}

function regenerate(chat) {
  if (state.streaming) return;
  const last = chat.messages[chat.messages.length - 1];
  if (last?.role === "assistant") chat.messages.pop();
  chat.model = $("model-select").value || chat.model;
  reply(chat);
}

function resend(chat, message, text) {
  if (state.streaming || !text.trim()) return;
  const index = chat.messages.indexOf(message);
  if (index < 0) return;
  message.content = text;
  message.editing = false;
  chat.messages.splice(index + 1);
  chat.model = $("model-select").value || chat.model;
  reply(chat);
}

function stop() {
  state.streaming?.controller.abort();
}

function autosize() {
  const prompt = $("prompt");
  prompt.style.height = "auto";
  prompt.style.height = `${Math.min(prompt.scrollHeight, 240)}px`;
}

// ---------------------------------------------------------------- dialogs

function openSettings() {
  $("api-key").value = state.prefs.apiKey ?? "";
  $("api-key").type = "password";
  $("toggle-key").textContent = "Show";
  $("toggle-key").setAttribute("aria-pressed", "false");
  $("theme-select").value = state.prefs.theme ?? "system";
  $("data-status").textContent = "";
  const relays = $("private-relay");
  relays.replaceChildren(...state.relays.map((relay) => new Option(relay, relay)));
  const current = privateRelay();
  $("private-mode").checked = current !== null;
  if (current) relays.value = current;
  $("private-mode").disabled = state.relays.length === 0;
  relays.disabled = state.relays.length === 0;
  if (state.relays.length === 0) {
    $("private-note").textContent =
      "This gateway lists no relay (gateway.relays in its configuration), so its page cannot send privately. gondola proxy gives any OpenAI client, this app included, the same private path.";
  }
  $("settings-dialog").showModal();
}

async function saveSettings() {
  const key = $("api-key").value.trim();
  const keyChanged = key !== (state.prefs.apiKey ?? "");
  state.prefs.apiKey = key;
  if (keyChanged) state.prefs.apiKeyAccount = null;
  state.prefs.theme = $("theme-select").value;
  state.prefs.privateRelay = $("private-mode").checked ? $("private-relay").value : "";
  applyTheme();
  renderHeader();
  await savePrefs();
  if (keyChanged) {
    hideBanner();
    await loadModels();
  }
}

function openChatSettings() {
  const settings = state.current.settings;
  $("system-prompt").value = settings.system_prompt ?? "";
  $("temperature").value = settings.temperature ?? "";
  $("top-p").value = settings.top_p ?? "";
  $("max-tokens").value = settings.max_tokens ?? "";
  $("include-system-prompt").checked = settings.include_venice_system_prompt !== false;
  const constraints = selectedModel()?.model_spec?.constraints;
  const rounded = (value) => Math.round(Number(value) * 100) / 100;
  $("temperature").placeholder = constraints?.temperature ? `default ${rounded(constraints.temperature.default)}` : "default";
  $("top-p").placeholder = constraints?.top_p ? `default ${rounded(constraints.top_p.default)}` : "default";
  $("max-tokens").placeholder = "gateway limit";
  $("chat-settings-error").textContent = "";
  $("chat-settings-dialog").showModal();
}

function readNumber(id, { min, max, integer = false }) {
  const raw = $(id).value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || (max !== undefined && value > max) || (integer && !Number.isInteger(value))) {
    throw new Error(`${$(id).labels[0].firstChild.textContent.trim()} must be ${integer ? "a whole number" : "a number"} from ${min}${max !== undefined ? ` to ${max}` : " up"}.`);
  }
  return value;
}

function saveChatSettings(event) {
  let settings;
  try {
    settings = {
      system_prompt: $("system-prompt").value,
      temperature: readNumber("temperature", { min: 0, max: 2 }),
      top_p: readNumber("top-p", { min: 0, max: 1 }),
      max_tokens: readNumber("max-tokens", { min: 1, integer: true }),
      include_venice_system_prompt: $("include-system-prompt").checked,
    };
  } catch (error) {
    event.preventDefault();
    $("chat-settings-error").textContent = error.message;
    return;
  }
  const chat = state.current;
  chat.settings = settings;
  if (chat.messages.length > 0) persist(chat);
}

function exportChats() {
  const chats = [...state.chats.values()].filter((chat) => !chat.incognito && chat.messages.length > 0);
  const document_ = exportDocument(chats.map(storedCopy));
  const blob = new Blob([JSON.stringify(document_, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = element("a");
  link.href = url;
  link.download = `gondola-chats-${new Date().toISOString().slice(0, 10)}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  $("data-status").textContent = `Exported ${chats.length} chat${chats.length === 1 ? "" : "s"}.`;
}

async function importChats(file) {
  try {
    const chats = parseExport(await file.text());
    for (const chat of chats) {
      for (const message of chat.messages) if (message.state === "streaming") message.state = "stopped";
      state.chats.set(chat.id, chat);
      persist(chat);
    }
    await Promise.all([...state.saveChains.values()]);
    $("data-status").textContent = `Imported ${chats.length} chat${chats.length === 1 ? "" : "s"}.`;
    renderAll();
  } catch (error) {
    $("data-status").textContent = `Import failed: ${error.message}`;
  }
}

async function deleteEverything() {
  $("settings-dialog").close();
  const sure = await confirmAction(
    "Delete everything?",
    "Every chat, your API key and settings, your wallet key, and the encryption key will be deleted from this browser. Export your chats first, and show and copy the wallet key on the wallet page, if you want to keep them: without its key a wallet's funds cannot be used again.",
    "Delete everything",
  );
  if (!sure) return;
  stop();
  await Promise.all([...state.saveChains.values()]);
  state.saveChains.clear();
  state.chats.clear();
  state.prefs = { apiKey: "", apiKeyAccount: null, theme: "system", model: null, privateRelay: "" };
  if (state.store) {
    await state.store.destroy();
    state.store = await Store.open();
  }
  await state.wallet.reset(state.store);
  applyTheme();
  state.current = newChat();
  renderAll();
  await loadModels();
  $("data-status").textContent = "Everything was deleted.";
}

// ---------------------------------------------------------------- views

const WALLET_ROUTE = "#wallet";

/** Shows the chat or the wallet page, as the address's fragment says. */
function route() {
  const wallet = location.hash === WALLET_ROUTE;
  $("main").hidden = wallet;
  $("wallet-view").hidden = !wallet;
  if (wallet) $("open-wallet").setAttribute("aria-current", "page");
  else $("open-wallet").removeAttribute("aria-current");
  closeSidebar();
  if (wallet) {
    document.title = "Wallet · Gondola";
    state.wallet.show();
  } else {
    document.title = "Gondola";
    state.wallet.hide();
  }
}

function showChatView() {
  if (location.hash !== WALLET_ROUTE) return;
  history.pushState(null, "", location.pathname + location.search);
  route();
}

/** The wallet page's minted key becomes the chats' API key. */
async function useApiKey(key, account) {
  state.prefs.apiKey = key;
  state.prefs.apiKeyAccount = account;
  await savePrefs();
  if ($("banner").dataset.source === "models") hideBanner();
  await loadModels();
}

// ---------------------------------------------------------------- layout

function openSidebar() {
  $("app").dataset.sidebar = "open";
  $("scrim").hidden = false;
}

function closeSidebar() {
  delete $("app").dataset.sidebar;
  $("scrim").hidden = true;
}

// ---------------------------------------------------------------- start

function wireEvents() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send($("prompt").value);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send($("prompt").value);
    }
  });
  $("prompt").addEventListener("input", autosize);
  $("stop").addEventListener("click", stop);
  $("dictate").addEventListener("click", toggleDictation);
  document.addEventListener("keydown", (event) => {
    const dialogOpen = document.querySelector("dialog[open]") !== null;
    if (event.key === "Escape" && state.streaming && !dialogOpen) {
      event.preventDefault();
      stop();
    } else if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === "o") {
      event.preventDefault();
      startNewChat();
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "k") {
      event.preventDefault();
      openSidebar();
      $("search").focus();
    }
  });
  $("new-chat").addEventListener("click", () => startNewChat());
  $("new-incognito").addEventListener("click", () => startNewChat({ incognito: true }));
  $("search").addEventListener("input", () => {
    state.search = $("search").value;
    renderChatList();
  });
  $("model-select").addEventListener("change", () => {
    const chat = state.current;
    chat.model = $("model-select").value;
    renderModelPicker();
    renderComposer();
    if (!chat.incognito) {
      state.prefs.model = chat.model;
      savePrefs();
      if (chat.messages.length > 0) persist(chat);
    }
  });
  $("open-settings").addEventListener("click", openSettings);
  $("banner-action").addEventListener("click", openSettings);
  $("banner-close").addEventListener("click", hideBanner);
  $("settings-cancel").addEventListener("click", () => $("settings-dialog").close());
  $("settings-form").addEventListener("submit", (event) => {
    if (event.submitter?.id === "settings-save") saveSettings();
  });
  $("toggle-key").addEventListener("click", () => {
    const input = $("api-key");
    const show = input.type === "password";
    input.type = show ? "text" : "password";
    $("toggle-key").textContent = show ? "Hide" : "Show";
    $("toggle-key").setAttribute("aria-pressed", String(show));
  });
  $("theme-toggle").addEventListener("click", () => {
    state.prefs.theme = effectiveTheme() === "dark" ? "light" : "dark";
    applyTheme();
    savePrefs();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  $("export-chats").addEventListener("click", exportChats);
  $("import-file").addEventListener("change", () => {
    const file = $("import-file").files[0];
    if (file) importChats(file);
    $("import-file").value = "";
  });
  $("delete-everything").addEventListener("click", deleteEverything);
  $("open-chat-settings").addEventListener("click", openChatSettings);
  $("chat-settings-cancel").addEventListener("click", () => $("chat-settings-dialog").close());
  $("chat-settings-form").addEventListener("submit", (event) => {
    if (event.submitter?.id === "chat-settings-save") saveChatSettings(event);
  });
  $("open-sidebar").addEventListener("click", openSidebar);
  $("wallet-open-sidebar").addEventListener("click", openSidebar);
  $("wallet-back").addEventListener("click", (event) => {
    event.preventDefault();
    showChatView();
    $("prompt").focus();
  });
  // Already on the wallet page, the link changes no fragment; it still closes the sidebar.
  $("open-wallet").addEventListener("click", closeSidebar);
  window.addEventListener("hashchange", route);
  $("close-sidebar").addEventListener("click", closeSidebar);
  $("scrim").addEventListener("click", closeSidebar);
}

async function start() {
  wireEvents();
  setPendingWrites(0);
  if (canEncrypt()) {
    try {
      state.store = await Store.open();
    } catch (error) {
      state.store = null;
      showBanner("Chats can't be saved in this browser", `Storage failed (${error?.message ?? error}); chats last until you close this tab.`);
    }
  } else {
    showBanner(
      "Chats can't be saved here",
      "This page is not in a secure context (HTTPS or localhost), so the browser offers no encryption; chats last until you close this tab.",
    );
  }
  if (!state.store) $("storage-note").textContent = "This browser context cannot store chats encrypted, so nothing is stored: chats last until you close the tab.";
  if (state.store) {
    state.prefs = { ...state.prefs, ...(await state.store.loadPrefs()) };
    for (const chat of await state.store.loadChats()) {
      for (const message of chat.messages) if (message.state === "streaming") message.state = "stopped";
      state.chats.set(chat.id, chat);
    }
  }
  applyTheme();
  state.wallet = new WalletPage({
    store: state.store,
    confirm: confirmAction,
    useApiKey,
    apiKeyFor: (address) => (state.prefs.apiKey && state.prefs.apiKeyAccount === address ? state.prefs.apiKey : ""),
  });
  const appConfig = await readAppConfig();
  state.relays = relaysIn(appConfig);
  state.wallet.useChain(appConfig);
  const latest = listedChats()[0];
  state.current = latest ?? newChat();
  renderAll();
  await loadModels();
  if (!state.current.model) state.current.model = $("model-select").value || null;
  route();
  $("app").dataset.ready = "true";
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/sw.js").catch(() => {
      // Without a worker the app still works; it just is not available offline.
    });
  }
}

start();
