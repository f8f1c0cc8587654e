// Where Gondola's web app keeps conversations, preferences and the wallet key: IndexedDB in
// this browser, and nowhere else (no server endpoint stores anything).
//
// Every record is encrypted with AES-GCM (256-bit) under one key generated on first use by
// WebCrypto as non-extractable: page script can use it but never read its bytes. The CryptoKey
// object itself is kept in IndexedDB (it is structured-cloneable). Each record has a fresh
// 96-bit IV, and its id is bound in as additional data, so records cannot be swapped. What this
// protects: conversations never sit in IndexedDB's files as plain text. What it does not: anyone
// who can run script in this origin, or who copies the whole browser profile, key included.

const DATABASE = "gondola";
// Version 2 added the wallet store.
const VERSION = 2;
const KEYS = "keys";
const CHATS = "chats";
const PREFS = "prefs";
const WALLET = "wallet";
const KEY_ID = "records";
const PREFS_ID = "prefs";
const WALLET_ID = "wallet";

/** Version of the export file format; `importChats` accepts this one. */
export const EXPORT_FORMAT = "gondola.chats";
export const EXPORT_VERSION = 1;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(transaction) {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error ?? new Error("transaction aborted"));
  });
}

function openDatabase() {
  const opening = indexedDB.open(DATABASE, VERSION);
  opening.onupgradeneeded = () => {
    const db = opening.result;
    for (const name of [KEYS, CHATS, PREFS, WALLET]) {
      if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, { keyPath: "id" });
    }
  };
  // A tab still running an older app holds the old version open; say so rather than wait.
  const blocked = new Promise((_, reject) => {
    opening.onblocked = () => reject(new Error("another Gondola tab holds an older version of its storage open; close it and reload"));
  });
  return Promise.race([request(opening), blocked]).then((db) => {
    // A newer version of the app opened in another tab: step aside so it can upgrade.
    db.onversionchange = () => db.close();
    return db;
  });
}

/** Whether this browser context can encrypt (WebCrypto needs HTTPS or loopback). */
export function canEncrypt() {
  return typeof crypto !== "undefined" && crypto.subtle !== undefined && typeof indexedDB !== "undefined";
}

export class Store {
  #db;
  #key;

  static async open() {
    const store = new Store();
    store.#db = await openDatabase();
    store.#key = await store.#loadOrCreateKey();
    return store;
  }

  async #loadOrCreateKey() {
    const existing = await request(this.#db.transaction(KEYS).objectStore(KEYS).get(KEY_ID));
    if (existing) return existing.key;
    const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    const transaction = this.#db.transaction(KEYS, "readwrite");
    transaction.objectStore(KEYS).put({ id: KEY_ID, key });
    await done(transaction);
    return key;
  }

  async #seal(id, value) {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const plain = new TextEncoder().encode(JSON.stringify(value));
    const data = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(id) },
      this.#key,
      plain,
    );
    return { id, iv, data };
  }

  async #open(record) {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: record.iv, additionalData: new TextEncoder().encode(record.id) },
      this.#key,
      record.data,
    );
    return JSON.parse(new TextDecoder().decode(plain));
  }

  async #put(storeName, id, value) {
    // Encrypt first: a transaction closes if it waits on anything but IndexedDB.
    const record = await this.#seal(id, value);
    const transaction = this.#db.transaction(storeName, "readwrite");
    transaction.objectStore(storeName).put(record);
    await done(transaction);
  }

  /** Every stored conversation, decrypted; records that fail to decrypt are skipped. */
  async loadChats() {
    const records = await request(this.#db.transaction(CHATS).objectStore(CHATS).getAll());
    const chats = [];
    for (const record of records) {
      try {
        chats.push(await this.#open(record));
      } catch {
        console.warn("gondola: a stored conversation could not be decrypted and was skipped");
      }
    }
    return chats;
  }

  saveChat(chat) {
    return this.#put(CHATS, chat.id, chat);
  }

  async deleteChat(id) {
    const transaction = this.#db.transaction(CHATS, "readwrite");
    transaction.objectStore(CHATS).delete(id);
    await done(transaction);
  }

  async loadPrefs() {
    const record = await request(this.#db.transaction(PREFS).objectStore(PREFS).get(PREFS_ID));
    if (!record) return {};
    try {
      return await this.#open(record);
    } catch {
      return {};
    }
  }

  savePrefs(prefs) {
    return this.#put(PREFS, PREFS_ID, prefs);
  }

  /** The stored wallet ({privateKey, address, created_at, source}), or null. */
  async loadWallet() {
    const record = await request(this.#db.transaction(WALLET).objectStore(WALLET).get(WALLET_ID));
    return record ? this.#open(record) : null;
  }

  /** Stores the wallet key, encrypted like every other record. */
  saveWallet(wallet) {
    return this.#put(WALLET, WALLET_ID, wallet);
  }

  async deleteWallet() {
    const transaction = this.#db.transaction(WALLET, "readwrite");
    transaction.objectStore(WALLET).delete(WALLET_ID);
    await done(transaction);
  }

  /** Deletes the whole database, key included; the store is unusable afterwards. */
  async destroy() {
    this.#db.close();
    const deleting = indexedDB.deleteDatabase(DATABASE);
    await new Promise((resolve, reject) => {
      deleting.onsuccess = () => resolve();
      deleting.onerror = () => reject(deleting.error);
      deleting.onblocked = () => resolve();
    });
  }
}

/** The export file's content: every given conversation, decrypted, in a versioned envelope. */
export function exportDocument(chats, now = new Date()) {
  return {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    exported_at: now.toISOString(),
    // Oldest first, so the same chats always export the same way.
    chats: chats.map(cleanChat).sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1)),
  };
}

const ROLES = new Set(["user", "assistant"]);

function cleanChat(chat) {
  return {
    id: chat.id,
    title: chat.title,
    created_at: chat.created_at,
    updated_at: chat.updated_at,
    model: chat.model ?? null,
    settings: { ...chat.settings },
    messages: chat.messages.map((message) => ({ ...message })),
  };
}

/** The conversations of an export file; throws an Error saying what is wrong with it. */
export function parseExport(text) {
  let document;
  try {
    document = JSON.parse(text);
  } catch {
    throw new Error("This file is not JSON.");
  }
  if (document?.format !== EXPORT_FORMAT) throw new Error("This file is not a Gondola chat export.");
  if (document.version !== EXPORT_VERSION) {
    throw new Error(`This export has version ${document.version}; this app reads version ${EXPORT_VERSION}.`);
  }
  if (!Array.isArray(document.chats)) throw new Error("The export has no list of chats.");
  return document.chats.map((chat, index) => {
    const where = `chat ${index + 1}`;
    if (typeof chat?.id !== "string" || chat.id === "") throw new Error(`${where} has no id.`);
    if (typeof chat.title !== "string") throw new Error(`${where} has no title.`);
    if (!Array.isArray(chat.messages)) throw new Error(`${where} has no messages.`);
    for (const message of chat.messages) {
      if (!ROLES.has(message?.role) || typeof message.content !== "string" || typeof message.id !== "string") {
        throw new Error(`${where} has a message that is not a user or assistant text message.`);
      }
    }
    return {
      id: chat.id,
      title: chat.title,
      created_at: Number(chat.created_at) || Date.now(),
      updated_at: Number(chat.updated_at) || Date.now(),
      model: typeof chat.model === "string" ? chat.model : null,
      settings: typeof chat.settings === "object" && chat.settings !== null ? chat.settings : {},
      messages: chat.messages,
    };
  });
}
