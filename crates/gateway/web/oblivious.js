// The private mode: Gondola's private path, spoken by the page itself.
//
// Every request is padded, written as Binary HTTP (RFC 9292), sealed to the gateway's published
// key as chunked Oblivious HTTP (RFC 9458, draft-ietf-ohai-chunked-ohttp) and sent through a
// relay run by someone else, so the gateway never sees this browser's address and the relay
// never sees what it carries. A chat request is sealed once more, inside, to a few providers of
// its model: the gateway routes and charges it without reading it, and the provider that runs it
// signs a receipt over the request and the reply, which is checked here. Where the gateway
// issues Privacy Pass tokens, the API key only buys them (blind RSA, in batches, through the
// relay too) and each chat request carries tokens instead, so the gateway cannot tie a request
// to an account.
//
// The cryptography comes from well-kept libraries (/privacy.js: @hpke, blindrsa-ts, @noble);
// the framing, which no library does, is written here. It mirrors the Rust client in
// crates/privacy (client.rs, sealed.rs, tokens.rs, proxy.rs), and the browser suite checks the
// two against the same gateway.

import { errorFields } from "/api.js";

const KEYS_PATH = "/.well-known/ohttp-gateway";
const GATEWAY_PATH = "/ohttp";
const CHUNKED_REQUEST_MEDIA_TYPE = "message/ohttp-chunked-req";
const CHUNKED_RESPONSE_MEDIA_TYPE = "message/ohttp-chunked-res";
const REQUEST_LABEL = "message/bhttp chunked request";
const RESPONSE_LABEL = "message/bhttp chunked response";
const ISSUER_DIRECTORY_PATH = "/.well-known/private-token-issuer-directory";
const ISSUE_PATH = "/v1/privacy/tokens";
const BATCH_REQUEST_MEDIA_TYPE = "application/private-token-batch-request";
const PROVIDERS_PATH = "/v1/privacy/providers";
const SEALED_CHAT_PATH = "/v1/privacy/chat";
const SEALED_IMAGES_PATH = "/v1/privacy/images";
const IMAGE_PATH = "/v1/image/generate";
const CHAT_PATH = "/v1/chat/completions";
const PROVIDER_HEADER = "x-gondola-provider";
const TOKENS_REQUIRED_HEADER = "x-gondola-tokens-required";
const RECEIPT_FIELD = "gondola-receipt";
const RECEIPT_PURPOSE = "gondola/provider-receipt/v1";

/** The KEMs the gateway and providers publish, by id: their public key lengths. X-Wing
 * (ML-KEM-768 + X25519, post-quantum) is listed first where it is offered, and preferred. */
const KEM_X25519 = 0x0020;
const KEM_X_WING = 0x647a;
const KEM_PUBLIC_KEY_BYTES = new Map([
  [KEM_X_WING, 1216],
  [KEM_X25519, 32],
]);
const KDF_HKDF_SHA256 = 0x0001;
/** AEADs this page can seal with, by id: their key lengths. */
const AEAD_KEY_BYTES = new Map([
  [0x0001, 16], // AES-128-GCM
  [0x0002, 32], // AES-256-GCM
]);
const AEAD_NONCE_BYTES = 12;
/** Largest plaintext sealed as one chunk (as the gateway's own writer cuts them). */
const MAX_CHUNK_PLAINTEXT = 16 * 1024;
/** Largest sealed chunk accepted from a reply. */
const MAX_REPLY_CHUNK = 4 * 1024 * 1024;
/** Largest whole body read from a reply that is not a stream (a list, a refusal, tokens). */
const MAX_READ_BYTES = 1024 * 1024;
/** Whole messages are padded to a power of two from 1 KiB to 64 KiB, then to steps of 64 KiB. */
const MIN_MESSAGE_BUCKET = 1024;
const LARGE_MESSAGE_STEP = 64 * 1024;

const TOKEN_TYPE = 0x0002;
const ISSUER_NAME = "gondola";
const TOKEN_KEY_BYTES = 256;
/** Tokens bought at once (as gondola proxy does): buying is rare and marks out no request. */
const TOKEN_BATCH = 20;
const MAX_TOKENS_PER_REQUEST = 64;
/** Copies of a chat request, each sealed to another provider of its model. */
const MAX_TARGETS = 4;
/** What a sealed request declares, and pays for, when it sets no max_tokens. */
const DEFAULT_SEALED_MAX_TOKENS = 1024;
/** How long a provider list is used before it is fetched again. */
const PROVIDERS_TTL_MS = 30_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Something on the private path failed; `status` is the relay's or gateway's, if one answered. */
export class PrivateFailure extends Error {
  constructor(message, { status = 0, code = "", headers = null, retryAfter = null, kind = "http" } = {}) {
    super(message);
    this.name = "PrivateFailure";
    this.status = status;
    this.code = code;
    this.headers = headers;
    this.retryAfter = retryAfter;
    this.kind = kind;
  }
}

let libraries = null;

/** The cryptography libraries, loaded on first use (about 100 KB). */
async function crypto_() {
  libraries ??= import("/privacy.js");
  const loaded = await libraries;
  if (!loaded.available) throw new PrivateFailure(loaded.missing, { kind: "setup" });
  if (!globalThis.crypto?.subtle) {
    throw new PrivateFailure(
      "Private mode needs the browser's Web Crypto, which it offers only to pages over HTTPS or on localhost.",
      { kind: "setup" },
    );
  }
  return loaded;
}

// ------------------------------------------------------------------------------ bytes

function concat(parts) {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u16(value) {
  return Uint8Array.of(value >> 8, value & 0xff);
}

function readU16(bytes, at) {
  return (bytes[at] << 8) | bytes[at + 1];
}

/** A variable-length integer (RFC 9000, section 16), shortest form. */
export function varint(value) {
  if (value < 0x40) return Uint8Array.of(value);
  if (value < 0x4000) return Uint8Array.of(0x40 | (value >> 8), value & 0xff);
  if (value < 0x40000000) {
    return Uint8Array.of(0x80 | (value >>> 24), (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
  }
  throw new RangeError("too large for this page");
}

function hex(bytes) {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  if (typeof text !== "string" || !/^(?:[0-9a-fA-F]{2})*$/.test(text)) return null;
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => Number.parseInt(pair, 16));
}

function base64(bytes) {
  let text = "";
  for (let at = 0; at < bytes.length; at += 0x8000) text += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  return btoa(text);
}

function fromBase64(text) {
  const normal = text.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  const binary = atob(normal + "=".repeat((4 - (normal.length % 4)) % 4));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

function base64url(bytes) {
  return base64(bytes).replace(/\+/g, "-").replace(/\//g, "_");
}

/** An ArrayBuffer holding exactly `bytes` (what the HPKE library takes). */
function buffer(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** Reads a stream (async or not) of byte arrays piece by piece. */
export class ByteReader {
  #source;
  #pieces = [];
  #length = 0;
  #done = false;

  constructor(source) {
    this.#source = (source[Symbol.asyncIterator] ?? source[Symbol.iterator]).call(source);
  }

  /** Whether `count` bytes are buffered, pulling more from the source until they are or it ends. */
  async #fill(count) {
    while (this.#length < count && !this.#done) {
      const { value, done } = await this.#source.next();
      if (done) {
        this.#done = true;
      } else if (value.length > 0) {
        this.#pieces.push(value);
        this.#length += value.length;
      }
    }
    return this.#length >= count;
  }

  #take(count) {
    const out = new Uint8Array(count);
    let at = 0;
    while (at < count) {
      const piece = this.#pieces[0];
      const used = Math.min(piece.length, count - at);
      out.set(piece.subarray(0, used), at);
      at += used;
      if (used === piece.length) this.#pieces.shift();
      else this.#pieces[0] = piece.subarray(used);
    }
    this.#length -= count;
    return out;
  }

  /** Exactly `count` bytes; an error if the source ends first. */
  async exact(count) {
    if (!(await this.#fill(count))) throw new Error("the message was cut short");
    return this.#take(count);
  }

  /** The next variable-length integer, or null where the source has ended. */
  async varint() {
    if (!(await this.#fill(1))) return null;
    const width = 1 << (this.#pieces[0][0] >> 6);
    const bytes = await this.exact(width);
    let value = bytes[0] & 0x3f;
    for (const byte of bytes.subarray(1)) value = value * 256 + byte;
    return value;
  }

  /** Everything left, up to `limit` bytes. */
  async rest(limit) {
    while (!this.#done) {
      if (this.#length > limit) throw new Error(`more than ${limit} bytes`);
      await this.#fill(this.#length + 1);
    }
    return this.#take(this.#length);
  }
}

/** The bytes of a fetch response's body, as they arrive. */
async function* bodyBytes(response) {
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

// ------------------------------------------------------------------------------ Binary HTTP

/** The size a message of `length` bytes is padded to (as crates/privacy/src/framing.rs pads). */
export function messageBucket(length) {
  if (length <= LARGE_MESSAGE_STEP) {
    let bucket = MIN_MESSAGE_BUCKET;
    while (bucket < length) bucket *= 2;
    return bucket;
  }
  return Math.ceil(length / LARGE_MESSAGE_STEP) * LARGE_MESSAGE_STEP;
}

function lengthPrefixed(bytes) {
  return concat([varint(bytes.length), bytes]);
}

/** A known-length Binary HTTP request, padded with zeros to its bucket. */
export function encodeRequest(method, path, headers, body) {
  const fields = concat(
    Object.entries(headers).flatMap(([name, value]) => [lengthPrefixed(encoder.encode(name)), lengthPrefixed(encoder.encode(value))]),
  );
  const message = concat([
    varint(0),
    lengthPrefixed(encoder.encode(method)),
    lengthPrefixed(encoder.encode("https")),
    lengthPrefixed(encoder.encode("gondola")),
    lengthPrefixed(encoder.encode(path)),
    lengthPrefixed(fields),
    lengthPrefixed(body),
    varint(0),
  ]);
  const padded = new Uint8Array(messageBucket(message.length));
  padded.set(message);
  return padded;
}

function parseFieldLines(bytes) {
  const fields = [];
  const reader = { at: 0 };
  const next = () => {
    const width = 1 << (bytes[reader.at] >> 6);
    let value = bytes[reader.at] & 0x3f;
    for (let index = 1; index < width; index += 1) value = value * 256 + bytes[reader.at + index];
    reader.at += width;
    if (reader.at > bytes.length) throw new Error("a field section is malformed");
    return value;
  };
  const text = (length) => {
    const value = decoder.decode(bytes.subarray(reader.at, reader.at + length));
    reader.at += length;
    if (reader.at > bytes.length) throw new Error("a field section is malformed");
    return value;
  };
  while (reader.at < bytes.length) {
    const name = text(next());
    fields.push([name.toLowerCase(), text(next())]);
  }
  return fields;
}

async function readFields(reader, known) {
  if (known) {
    const length = await reader.varint();
    if (length === null) throw new Error("the message was cut short");
    if (length > MAX_READ_BYTES) throw new Error("a field section is too large");
    return parseFieldLines(await reader.exact(length));
  }
  const fields = [];
  for (;;) {
    const nameLength = await reader.varint();
    if (nameLength === null) throw new Error("the message was cut short");
    if (nameLength === 0) return fields;
    const name = decoder.decode(await reader.exact(nameLength));
    const valueLength = await reader.varint();
    if (valueLength === null || valueLength > MAX_READ_BYTES) throw new Error("a field is malformed");
    fields.push([name.toLowerCase(), decoder.decode(await reader.exact(valueLength))]);
  }
}

/**
 * A Binary HTTP response read as it arrives from `source` (decrypted bytes): `head()` gives the
 * final status and fields, `content()` the content piece by piece, then `trailer()` its fields.
 */
export class ResponseReader {
  #reader;
  #known = false;
  #trailer = null;

  constructor(source) {
    this.#reader = new ByteReader(source);
  }

  async head() {
    const framing = await this.#reader.varint();
    if (framing !== 1 && framing !== 3) throw new Error("the reply is not a Binary HTTP response");
    this.#known = framing === 1;
    for (;;) {
      const status = await this.#reader.varint();
      if (status === null || status < 100 || status > 599) throw new Error("the reply has no valid status");
      const fields = await readFields(this.#reader, this.#known);
      // Informational responses (1xx) come first; the final one follows.
      if (status >= 200) return { status, headers: new Headers(fields) };
    }
  }

  /** The content, as it arrives. */
  async *content() {
    if (this.#known) {
      const length = await this.#reader.varint();
      if (length === null) return;
      if (length > MAX_READ_BYTES) throw new Error("the reply is too large");
      if (length > 0) yield await this.#reader.exact(length);
    } else {
      for (;;) {
        const length = await this.#reader.varint();
        if (length === null) throw new Error("the reply was cut short");
        if (length === 0) break;
        if (length > MAX_REPLY_CHUNK) throw new Error("a piece of the reply is too large");
        yield await this.#reader.exact(length);
      }
    }
    // A message may end before its trailer (RFC 9292, section 3.8): then it has none.
    const fields = [];
    const length = await this.#reader.varint();
    if (length !== null && length > 0) {
      if (this.#known) {
        if (length > MAX_READ_BYTES) throw new Error("the trailer is too large");
        fields.push(...parseFieldLines(await this.#reader.exact(length)));
      } else {
        const name = decoder.decode(await this.#reader.exact(length));
        const valueLength = await this.#reader.varint();
        if (valueLength === null || valueLength > MAX_READ_BYTES) throw new Error("the trailer is malformed");
        fields.push([name.toLowerCase(), decoder.decode(await this.#reader.exact(valueLength))]);
        fields.push(...(await readFields(this.#reader, false)));
      }
    }
    this.#trailer = new Headers(fields);
    // What follows is padding. Reading it to the end lets the decryption below check the last
    // chunk, so a reply cut short after its message is noticed too.
    await this.#reader.rest(LARGE_MESSAGE_STEP * 2);
  }

  /** The trailer fields, once `content()` has been read to its end. */
  trailer() {
    return this.#trailer;
  }
}

/** The whole content of a response, up to `limit` bytes. */
async function readAll(response, limit = MAX_READ_BYTES) {
  const pieces = [];
  let length = 0;
  for await (const piece of response.content()) {
    length += piece.length;
    if (length > limit) throw new PrivateFailure(`the gateway's answer is over ${limit} bytes`);
    pieces.push(piece);
  }
  return concat(pieces);
}

// ------------------------------------------------------------------------------ Oblivious HTTP

/**
 * The first configuration of an `application/ohttp-keys` list (RFC 9540) that this page can
 * seal to: X-Wing or X25519, HKDF-SHA256, AES-GCM.
 */
export function chooseKeyConfig(list) {
  let at = 0;
  while (at + 2 <= list.length) {
    const length = readU16(list, at);
    const config = list.subarray(at + 2, at + 2 + length);
    at += 2 + length;
    if (config.length !== length || length < 3) break;
    const keyId = config[0];
    const kem = readU16(config, 1);
    const keyBytes = KEM_PUBLIC_KEY_BYTES.get(kem);
    if (keyBytes === undefined || config.length < 3 + keyBytes + 2) continue;
    const publicKey = config.slice(3, 3 + keyBytes);
    const suites = 3 + keyBytes + 2;
    const suitesLength = readU16(config, 3 + keyBytes);
    for (let suite = suites; suite + 4 <= suites + suitesLength && suite + 4 <= config.length; suite += 4) {
      const kdf = readU16(config, suite);
      const aead = readU16(config, suite + 2);
      if (kdf === KDF_HKDF_SHA256 && AEAD_KEY_BYTES.has(aead)) return { keyId, kem, publicKey, kdf, aead };
    }
  }
  throw new PrivateFailure("the key configuration offers nothing this page can seal to (X-Wing or X25519, HKDF-SHA256, AES-GCM)");
}

/**
 * Seals `plaintext` as a chunked Oblivious HTTP request to `config`: the body to send, and the
 * secrets that open its reply.
 */
export async function sealChunked(config, plaintext) {
  const lib = await crypto_();
  const aead = config.aead === 0x0001 ? new lib.Aes128Gcm() : new lib.Aes256Gcm();
  const kem = config.kem === KEM_X_WING ? new lib.XWing() : new lib.DhkemX25519HkdfSha256();
  const suite = new lib.CipherSuite({ kem, kdf: new lib.HkdfSha256(), aead });
  const header = concat([Uint8Array.of(config.keyId), u16(config.kem), u16(config.kdf), u16(config.aead)]);
  const info = concat([encoder.encode(REQUEST_LABEL), Uint8Array.of(0), header]);
  const recipientPublicKey = await suite.kem.importKey("raw", buffer(config.publicKey), true);
  const sender = await suite.createSenderContext({ recipientPublicKey, info: buffer(info) });
  const enc = new Uint8Array(sender.enc);
  const parts = [header, enc];
  for (let at = 0; at < plaintext.length; at += MAX_CHUNK_PLAINTEXT) {
    const sealed = new Uint8Array(await sender.seal(buffer(plaintext.subarray(at, at + MAX_CHUNK_PLAINTEXT))));
    parts.push(varint(sealed.length), sealed);
  }
  const last = new Uint8Array(await sender.seal(new ArrayBuffer(0), buffer(encoder.encode("final"))));
  parts.push(varint(0), last);
  const keyBytes = AEAD_KEY_BYTES.get(config.aead);
  const secret = new Uint8Array(await sender.export(buffer(encoder.encode(RESPONSE_LABEL)), Math.max(keyBytes, AEAD_NONCE_BYTES)));
  return { body: concat(parts), opener: { enc, secret, keyBytes } };
}

/** Decrypts a chunked Oblivious HTTP reply from `source` (its bytes in any pieces), chunk by chunk. */
export async function* openChunked(source, { enc, secret, keyBytes }) {
  const reader = new ByteReader(source);
  const responseNonce = await reader.exact(Math.max(keyBytes, AEAD_NONCE_BYTES));
  const material = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
  const salt = concat([enc, responseNonce]);
  const derive = (label, bits) =>
    crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info: encoder.encode(label) }, material, bits);
  const key = await crypto.subtle.importKey("raw", await derive("key", keyBytes * 8), "AES-GCM", false, ["decrypt"]);
  const nonceBase = new Uint8Array(await derive("nonce", AEAD_NONCE_BYTES * 8));
  let counter = 0;
  const open = async (sealed, final) => {
    const nonce = nonceBase.slice();
    let value = counter;
    for (let index = nonce.length - 1; index >= nonce.length - 6 && value > 0; index -= 1) {
      nonce[index] ^= value & 0xff;
      value = Math.floor(value / 256);
    }
    counter += 1;
    try {
      return new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: nonce, additionalData: final ? encoder.encode("final") : new Uint8Array(0) },
          key,
          sealed,
        ),
      );
    } catch {
      throw new PrivateFailure("the reply could not be decrypted: it was tampered with or cut short", { kind: "stream" });
    }
  };
  for (;;) {
    const length = await reader.varint();
    if (length === null) throw new PrivateFailure("the reply ended before its last chunk", { kind: "stream" });
    if (length > MAX_REPLY_CHUNK) throw new PrivateFailure("a chunk of the reply is too large", { kind: "stream" });
    if (length > 0) {
      yield await open(await reader.exact(length), false);
    } else {
      yield await open(await reader.rest(MAX_REPLY_CHUNK), true);
      return;
    }
  }
}

// ------------------------------------------------------------------------------ tokens

/** A token key's SubjectPublicKeyInfo (RSASSA-PSS, RFC 9578) as an RSA-PSS CryptoKey. */
async function importTokenKey(spki) {
  // Browsers import RSA keys only under the rsaEncryption identifier: the key itself (the BIT
  // STRING's RSAPublicKey) is kept and given that header instead.
  const der = (at) => {
    const tag = spki[at];
    let length = spki[at + 1];
    let start = at + 2;
    if (length & 0x80) {
      const width = length & 0x7f;
      length = 0;
      for (let index = 0; index < width; index += 1) length = length * 256 + spki[start + index];
      start += width;
    }
    return { tag, start, end: start + length };
  };
  const outer = der(0);
  const algorithm = der(outer.start);
  const key = der(algorithm.end);
  if (outer.tag !== 0x30 || algorithm.tag !== 0x30 || key.tag !== 0x03 || key.end > spki.length) {
    throw new PrivateFailure("the issuer's token key is not a SubjectPublicKeyInfo");
  }
  const rsaPublicKey = spki.subarray(key.start + 1, key.end);
  const length = (count) => (count < 0x80 ? Uint8Array.of(count) : count < 0x100 ? Uint8Array.of(0x81, count) : Uint8Array.of(0x82, count >> 8, count & 0xff));
  const rsaEncryption = Uint8Array.of(0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00);
  const bits = concat([Uint8Array.of(0x03), length(rsaPublicKey.length + 1), Uint8Array.of(0), rsaPublicKey]);
  const body = concat([rsaEncryption, bits]);
  const converted = concat([Uint8Array.of(0x30), length(body.length), body]);
  return crypto.subtle.importKey("spki", converted, { name: "RSA-PSS", hash: "SHA-384" }, true, ["verify"]);
}

/** SHA-256 of the one challenge every Gondola token answers (type 2, issuer `gondola`). */
async function challengeDigest() {
  const issuer = encoder.encode(ISSUER_NAME);
  return sha256(concat([u16(TOKEN_TYPE), u16(issuer.length), issuer, Uint8Array.of(0), u16(0)]));
}

/** The issuer's key of the current epoch, from its directory body. */
async function issuerKey(directory) {
  const entry = directory?.["token-keys"]?.find?.((key) => key["token-type"] === TOKEN_TYPE);
  if (!entry) throw new PrivateFailure("the gateway's issuer lists no blind RSA key");
  const spki = fromBase64(entry["token-key"]);
  return {
    epoch: directory.epoch,
    maxBatch: Math.max(1, Math.min(Number(directory["max-batch"]) || 1, 100)),
    keyId: await sha256(spki),
    publicKey: await importTokenKey(spki),
    challenge: await challengeDigest(),
  };
}

/** A batch request for `count` tokens under `key`: the body, and what finishes each token. */
async function requestBatch(key, count) {
  const { RSABSSA } = await crypto_();
  const suite = RSABSSA.SHA384.PSS.Deterministic();
  const pending = [];
  const requests = [];
  for (let index = 0; index < count; index += 1) {
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const input = concat([u16(TOKEN_TYPE), nonce, key.challenge, key.keyId]);
    const { blindedMsg, inv } = await suite.blind(key.publicKey, input);
    pending.push({ input, inv });
    requests.push(u16(TOKEN_TYPE), Uint8Array.of(key.keyId[31]), blindedMsg);
  }
  const items = concat(requests);
  return { body: concat([varint(items.length), items]), pending, suite };
}

/** The tokens of the issuer's answer to a batch; all or nothing. */
async function finishBatch(key, { pending, suite }, answer) {
  const reader = new ByteReader([answer]);
  const length = await reader.varint();
  if (length === null || length !== answer.length - varint(length).length) {
    throw new PrivateFailure("the issuer's answer is malformed");
  }
  const tokens = [];
  for (const { input, inv } of pending) {
    const present = (await reader.exact(1))[0];
    if (present !== 1) throw new PrivateFailure(`${tokens.length} of the ${pending.length} tokens asked for were signed`);
    const type = await reader.exact(2);
    if (readU16(type, 0) !== TOKEN_TYPE) throw new PrivateFailure("the issuer answered with a token of another type");
    const signature = await suite.finalize(key.publicKey, input, await reader.exact(TOKEN_KEY_BYTES), inv);
    tokens.push(concat([input, signature]));
  }
  return tokens;
}

function tokenAuthorization(tokens) {
  return tokens.map((token) => `PrivateToken token=${base64url(token)}`).join(", ");
}

// ------------------------------------------------------------------------------ receipts

/** Checks a provider's receipt (the trailer field's JSON); returns it, or throws why not. */
export async function verifyReceipt(envelopeText, { publicKey, provider, requestSha256, responseSha256 }) {
  const { ed25519 } = await crypto_();
  let envelope;
  try {
    envelope = JSON.parse(envelopeText);
  } catch {
    throw new Error("the receipt is malformed");
  }
  if (typeof envelope?.public_key !== "string" || envelope.public_key.toLowerCase() !== publicKey.toLowerCase()) {
    throw new Error("the receipt is signed by another key than the provider's");
  }
  const key = fromHex(envelope.public_key);
  const signature = fromHex(envelope.signature);
  if (!key || key.length !== 32 || !signature || signature.length !== 64 || typeof envelope.payload !== "string") {
    throw new Error("the receipt is malformed");
  }
  let valid = false;
  try {
    valid = ed25519.verify(signature, encoder.encode(envelope.payload), key);
  } catch {
    valid = false;
  }
  if (!valid) throw new Error("the receipt's signature does not verify");
  const receipt = JSON.parse(envelope.payload);
  if (receipt.purpose !== RECEIPT_PURPOSE) throw new Error("the receipt is for another purpose");
  if (receipt.provider !== provider) throw new Error("the receipt is for another provider");
  if (String(receipt.request_sha256).toLowerCase() !== hex(requestSha256)) throw new Error("the receipt is for another request");
  if (String(receipt.response_sha256).toLowerCase() !== hex(responseSha256)) throw new Error("the receipt is for another reply");
  return receipt;
}

// ------------------------------------------------------------------------------ the client

/** What a refusal from the gateway said, in the failure the app describes to people. */
async function refusal(head, response) {
  let text = "";
  try {
    text = decoder.decode(await readAll(response, 64 * 1024));
  } catch {
    // Unreadable: the status says enough.
  }
  const { message, code } = errorFields(text);
  const retry = Number.parseInt(head.headers.get("retry-after") ?? "", 10);
  return new PrivateFailure(message || `the gateway answered ${head.status}`, {
    status: head.status,
    code,
    headers: head.headers,
    retryAfter: Number.isFinite(retry) ? retry : null,
  });
}

/** Talks to one gateway through one relay: keys, tokens and provider list are kept per client. */
class PrivateClient {
  constructor(relay) {
    this.relay = relay.replace(/\/+$/, "");
    this.keys = null;
    this.purses = new Map();
    this.providers = null;
  }

  async keyConfig(refresh) {
    if (this.keys && !refresh) return this.keys;
    let response;
    try {
      response = await fetch(`${this.relay}${KEYS_PATH}`, { cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    } catch (error) {
      throw new PrivateFailure(`The relay at ${this.relay} cannot be reached (${error?.message ?? error}).`, { kind: "network" });
    }
    if (!response.ok) throw new PrivateFailure(`The relay could not fetch the gateway's key (${response.status}).`, { status: response.status });
    this.keys = chooseKeyConfig(new Uint8Array(await response.arrayBuffer()));
    return this.keys;
  }

  /**
   * Sends `method path` sealed through the relay; resolves once the gateway's reply has begun,
   * with its head and a reader of the rest.
   */
  async send(method, path, headers, body, signal) {
    for (let refreshed = false; ; refreshed = true) {
      const config = await this.keyConfig(refreshed);
      const { body: sealed, opener } = await sealChunked(config, encodeRequest(method, path, headers, body));
      let response;
      try {
        response = await fetch(`${this.relay}${GATEWAY_PATH}`, {
          method: "POST",
          headers: { "content-type": CHUNKED_REQUEST_MEDIA_TYPE },
          body: sealed,
          signal,
          cache: "no-store",
          credentials: "omit",
          referrerPolicy: "no-referrer",
        });
      } catch (error) {
        if (signal?.aborted) throw error;
        throw new PrivateFailure(`The relay at ${this.relay} cannot be reached (${error?.message ?? error}).`, { kind: "network" });
      }
      if (response.ok && response.headers.get("content-type") === CHUNKED_RESPONSE_MEDIA_TYPE) {
        const reply = new ResponseReader(openChunked(bodyBytes(response), opener));
        const head = await reply.head();
        return { head, reply };
      }
      const text = (await response.text()).slice(0, 500);
      // A gateway that cannot decrypt may have a new key: fetch it once and try again.
      if (response.status === 400 && !refreshed) continue;
      throw new PrivateFailure(`The relay or gateway refused the sealed request (${response.status}): ${text}`, { status: response.status });
    }
  }

  purse(apiKey) {
    if (!this.purses.has(apiKey)) this.purses.set(apiKey, { issuer: undefined, tokens: [] });
    return this.purses.get(apiKey);
  }

  /** The gateway's issuer key, or null where it issues no tokens. */
  async issuer(signal) {
    const { head, reply } = await this.send("GET", ISSUER_DIRECTORY_PATH, {}, new Uint8Array(0), signal);
    if (head.status === 404) return null;
    if (head.status !== 200) throw await refusal(head, reply);
    return issuerKey(JSON.parse(decoder.decode(await readAll(reply, 16 * 1024))));
  }

  /** `count` tokens to pay with, bought with `apiKey` if the purse lacks them; null: pay with the key. */
  async tokens(apiKey, count, signal) {
    const purse = this.purse(apiKey);
    if (purse.issuer === undefined) purse.issuer = await this.issuer(signal);
    const key = purse.issuer;
    if (!key) return null;
    if (purse.tokens.length < count) {
      const buy = Math.min(Math.max(count - purse.tokens.length, TOKEN_BATCH), key.maxBatch);
      const batch = await requestBatch(key, buy);
      const { head, reply } = await this.send(
        "POST",
        ISSUE_PATH,
        { authorization: `Bearer ${apiKey}`, "content-type": BATCH_REQUEST_MEDIA_TYPE },
        batch.body,
        signal,
      );
      // Not an account's key: it buys nothing, and requests carry it instead.
      if (head.status === 403) {
        purse.issuer = null;
        return null;
      }
      if (head.status !== 200) throw await refusal(head, reply);
      purse.tokens.push(...(await finishBatch(key, batch, await readAll(reply, 16 + buy * 259))));
    }
    if (purse.tokens.length < count) throw new PrivateFailure(`a request needs ${count} tokens, more than a batch holds`);
    return purse.tokens.splice(0, count);
  }

  giveBack(apiKey, tokens) {
    this.purse(apiKey).tokens.unshift(...tokens);
  }

  /**
   * A POST paid for by `apiKey`: with tokens where the gateway issues them (the request then
   * carries no key), with the key where it does not. Refusals for too few tokens, for a spent
   * token and for a past day's tokens are each tried again once.
   */
  async sendPaid(path, apiKey, body, signal) {
    let count = 1;
    let recounted = false;
    let renewed = false;
    let replaced = false;
    for (;;) {
      const headers = { "content-type": "application/json" };
      const tokens = apiKey ? await this.tokens(apiKey, count, signal) : null;
      if (tokens) headers.authorization = tokenAuthorization(tokens);
      else if (apiKey) headers.authorization = `Bearer ${apiKey}`;
      let sent;
      try {
        sent = await this.send("POST", path, headers, body, signal);
      } catch (error) {
        // Whether the gateway spent them is unknown: kept, and refused harmlessly if they were.
        if (tokens) this.giveBack(apiKey, tokens);
        throw error;
      }
      if (!tokens) return sent;
      const { status } = sent.head;
      const required = Number.parseInt(sent.head.headers.get(TOKENS_REQUIRED_HEADER) ?? "", 10);
      if (status >= 200 && status < 300) return sent;
      if (status === 402 && Number.isFinite(required) && !recounted && required > count) {
        this.giveBack(apiKey, tokens);
        count = Math.min(required, MAX_TOKENS_PER_REQUEST);
        recounted = true;
      } else if (status === 402 && !Number.isFinite(required) && !replaced) {
        // One of them was spent already: they are dropped.
        replaced = true;
      } else if (status === 401 && !renewed) {
        // Refused tokens: most likely a new day's key. Start over with it.
        this.purses.delete(apiKey);
        renewed = true;
      } else {
        if (status !== 401 && status !== 402) this.giveBack(apiKey, tokens);
        return sent;
      }
    }
  }

  /** The providers that take sealed requests, and the other names of their models. */
  async sealingProviders(refresh, signal) {
    if (!refresh && this.providers && Date.now() - this.providers.fetched < PROVIDERS_TTL_MS) return this.providers.list;
    const { head, reply } = await this.send("GET", PROVIDERS_PATH, {}, new Uint8Array(0), signal);
    let list = { data: [], aliases: {} };
    if (head.status === 200) {
      try {
        list = JSON.parse(decoder.decode(await readAll(reply)));
      } catch {
        // An unreadable list seals to no one: the request goes to the gateway's chat API.
      }
    }
    this.providers = { fetched: Date.now(), list };
    return list;
  }
}

const clients = new Map();

function clientFor(relay) {
  if (!clients.has(relay)) clients.set(relay, new PrivateClient(relay));
  return clients.get(relay);
}

/** Up to MAX_TARGETS providers of `model`, in random order. */
function targets(list, model) {
  const serving = (Array.isArray(list?.data) ? list.data : []).filter((provider) => provider?.models?.includes?.(model));
  for (let index = serving.length - 1; index > 0; index -= 1) {
    const other = crypto.getRandomValues(new Uint32Array(1))[0] % (index + 1);
    [serving[index], serving[other]] = [serving[other], serving[index]];
  }
  return serving.slice(0, MAX_TARGETS);
}

/** The `data` of each server-sent event in `pieces` (bytes), as text. */
async function* sseData(pieces) {
  const text = new TextDecoder();
  let pending = "";
  const take = function* (final) {
    pending = pending.replace(/\r\n?/g, "\n");
    let boundary = pending.indexOf("\n\n");
    while (boundary >= 0 || (final && pending.trim())) {
      const block = boundary >= 0 ? pending.slice(0, boundary) : pending;
      pending = boundary >= 0 ? pending.slice(boundary + 2) : "";
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5));
      if (data.length > 0) yield data.join("\n");
      boundary = pending.indexOf("\n\n");
    }
  };
  for await (const piece of pieces) {
    pending += text.decode(piece, { stream: true });
    yield* take(false);
  }
  pending += text.decode();
  yield* take(true);
}

/** The sealed bytes a gateway's stream of sealed events carries. */
async function* sealedBytes(reply) {
  let done = false;
  // Read to the end (past [DONE]), so that the outer layer's last chunk is checked too.
  for await (const data of sseData(reply.content())) {
    if (data === "[DONE]") done = true;
    if (done) continue;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      throw new PrivateFailure("the gateway sent a malformed sealed event", { kind: "stream" });
    }
    if (event.error) {
      throw new PrivateFailure(event.error.message ?? "the reply broke off", { kind: "stream", code: event.error.code ?? "" });
    }
    if (typeof event.sealed === "string") yield fromBase64(event.sealed);
  }
}

/**
 * A chat completion through the private path. Resolves once the reply has begun, with
 * `{ status, headers, events, sealed }`: `events` yields the `data` of each server-sent event
 * of the reply (the provider's own, for a sealed request) and, for a sealed request, ends by
 * checking the provider's receipt; `sealed()` then gives `{provider, receipt}` (null for a
 * request that went to the gateway's chat API). A refusal throws PrivateFailure with the
 * gateway's status and words.
 */
/** Most bytes of a sealed JSON answer read whole (a 1024² PNG in base64 is about 3 MB). */
const MAX_JSON_ANSWER_BYTES = 8 * 1024 * 1024;

/**
 * A JSON request to the gateway's API other than chat (an image), sealed to the gateway and
 * carried by the relay, paid as chat is (tokens bought with `apiKey`, or the key itself):
 * `{status, headers, body}` with the answer parsed.
 */
export async function privateJson({ relay, apiKey, path, body, signal }) {
  const client = clientFor(relay);
  const { head, reply } = await client.sendPaid(path, apiKey, encoder.encode(JSON.stringify(body)), signal);
  if (head.status !== 200) throw await refusal(head, reply);
  const text = decoder.decode(await readAll(reply, MAX_JSON_ANSWER_BYTES));
  try {
    return { status: head.status, headers: head.headers, body: JSON.parse(text) };
  } catch {
    throw new PrivateFailure("the gateway's sealed answer is not JSON", { kind: "stream" });
  }
}

/**
 * An image request (Venice's `/image/generate` body) sent privately: sealed to a few providers
 * of its model where they take sealed requests (the reply's receipt checked against the
 * provider's key, the request and the reply), else sealed to the gateway alone.
 * `{status, headers, body, sealed}`, `sealed` being `{provider, receipt}` or null.
 */
export async function privateImage({ relay, apiKey, body, signal }) {
  const client = clientFor(relay);
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const list = await client.sealingProviders(attempt > 0, signal);
    const requested = String(body.model ?? "");
    const listed = (list.data ?? []).some((provider) => provider?.models?.includes?.(requested));
    const model = listed ? requested : (list.aliases?.[requested] ?? requested);
    const chosen = targets(list, model);
    if (chosen.length === 0) break;
    // The served id inside the seal: the provider holds the request to its own model.
    const imageBody = encoder.encode(JSON.stringify({ ...body, model }));
    const openers = new Map();
    const sealed = [];
    for (const provider of chosen) {
      const config = chooseKeyConfig(fromBase64(provider.keys));
      const copy = await sealChunked(config, encodeRequest("POST", IMAGE_PATH, { "content-type": "application/json" }, imageBody));
      sealed.push({ provider: provider.id, request: base64(copy.body) });
      openers.set(provider.id, { opener: copy.opener, publicKey: provider.public_key });
    }
    const outer = encoder.encode(JSON.stringify({ model, variants: body.variants ?? 1, sealed }));
    const { head, reply } = await client.sendPaid(SEALED_IMAGES_PATH, apiKey, outer, signal);
    const provider = head.headers.get(PROVIDER_HEADER);
    if (head.status === 503 && attempt === 0) continue;
    if (head.status !== 200 || !provider) throw await refusal(head, reply);
    const target = openers.get(provider);
    if (!target) throw new PrivateFailure(`the gateway answered for ${provider}, which the request was not sealed to`);
    const inner = new ResponseReader(openChunked(sealedBytes(reply), target.opener));
    const innerHead = await inner.head();
    if (innerHead.status !== 200) throw await refusal(innerHead, inner);
    const { sha256: hasher } = await crypto_();
    const hash = hasher.create();
    const pieces = [];
    let length = 0;
    for await (const piece of inner.content()) {
      length += piece.length;
      if (length > MAX_JSON_ANSWER_BYTES) throw new PrivateFailure("the provider's answer is larger than allowed", { kind: "stream" });
      hash.update(piece);
      pieces.push(piece);
    }
    const envelope = inner.trailer()?.get(RECEIPT_FIELD);
    if (!envelope) throw new PrivateFailure("the provider's reply carries no receipt", { kind: "stream" });
    let receipt;
    try {
      receipt = await verifyReceipt(envelope, {
        publicKey: target.publicKey,
        provider,
        requestSha256: await sha256(imageBody),
        responseSha256: hash.digest(),
      });
    } catch (error) {
      throw new PrivateFailure(`The provider's receipt does not verify: ${error.message}.`, { kind: "stream" });
    }
    let answer;
    try {
      answer = JSON.parse(decoder.decode(concat(pieces)));
    } catch {
      throw new PrivateFailure("the provider's sealed answer is not JSON", { kind: "stream" });
    }
    const headers = new Headers(innerHead.headers);
    for (const [name, value] of head.headers) if (name !== "content-type") headers.set(name, value);
    return { status: innerHead.status, headers, body: answer, sealed: { provider, receipt } };
  }
  // No provider of the model takes sealed requests: the gateway's image API, sealed to it.
  const answer = await privateJson({ relay, apiKey, path: IMAGE_PATH, body, signal });
  return { ...answer, sealed: null };
}

export async function privateChat({ relay, apiKey, body, signal }) {
  const client = clientFor(relay);
  const chatBody = encoder.encode(JSON.stringify(body));
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const list = await client.sealingProviders(attempt > 0, signal);
    const requested = String(body.model ?? "").split(":")[0];
    const listed = (list.data ?? []).some((provider) => provider?.models?.includes?.(requested));
    const model = listed ? requested : (list.aliases?.[requested] ?? requested);
    const chosen = targets(list, model);
    if (chosen.length === 0) break;
    const openers = new Map();
    const sealed = [];
    for (const provider of chosen) {
      const config = chooseKeyConfig(fromBase64(provider.keys));
      const copy = await sealChunked(config, encodeRequest("POST", CHAT_PATH, { "content-type": "application/json" }, chatBody));
      sealed.push({ provider: provider.id, request: base64(copy.body) });
      openers.set(provider.id, { opener: copy.opener, publicKey: provider.public_key });
    }
    const outer = encoder.encode(
      JSON.stringify({ model, max_tokens: body.max_tokens ?? DEFAULT_SEALED_MAX_TOKENS, sealed }),
    );
    const { head, reply } = await client.sendPaid(SEALED_CHAT_PATH, apiKey, outer, signal);
    const provider = head.headers.get(PROVIDER_HEADER);
    if (head.status === 503 && attempt === 0) continue;
    if (head.status !== 200 || !provider) throw await refusal(head, reply);
    const target = openers.get(provider);
    if (!target) throw new PrivateFailure(`the gateway answered for ${provider}, which the request was not sealed to`);
    const inner = new ResponseReader(openChunked(sealedBytes(reply), target.opener));
    const innerHead = await inner.head();
    if (innerHead.status !== 200) throw await refusal(innerHead, inner);
    // Balances come from the gateway; the rest from the provider.
    const headers = new Headers(innerHead.headers);
    for (const [name, value] of head.headers) if (name !== "content-type") headers.set(name, value);
    const { sha256: hasher } = await crypto_();
    const requestSha256 = await sha256(chatBody);
    let verdict = null;
    const hashed = async function* () {
      const hash = hasher.create();
      for await (const piece of inner.content()) {
        hash.update(piece);
        yield piece;
      }
      const envelope = inner.trailer()?.get(RECEIPT_FIELD);
      if (!envelope) throw new PrivateFailure("the provider's reply carries no receipt", { kind: "stream" });
      try {
        verdict = await verifyReceipt(envelope, { publicKey: target.publicKey, provider, requestSha256, responseSha256: hash.digest() });
      } catch (error) {
        throw new PrivateFailure(`The provider's receipt does not verify: ${error.message}.`, { kind: "stream" });
      }
    };
    return {
      status: innerHead.status,
      headers,
      events: sseData(hashed()),
      sealed: () => ({ provider, receipt: verdict }),
    };
  }
  // No provider of the model takes sealed requests: the gateway's chat API, sealed to it.
  const { head, reply } = await client.sendPaid(CHAT_PATH, apiKey, chatBody, signal);
  if (head.status !== 200) throw await refusal(head, reply);
  return { status: head.status, headers: head.headers, events: sseData(reply.content()), sealed: () => null };
}
