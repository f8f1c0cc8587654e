// The private mode's third-party cryptography, and nothing more: HPKE (RFC 9180) with X25519 or
// X-Wing (ML-KEM-768 + X25519), HKDF-SHA256 and AES-GCM, which Oblivious HTTP seals with; blind RSA (RFC 9474), which buys
// Privacy Pass tokens the issuer cannot link to their use; Ed25519 and SHA-256, which check a
// provider's receipt. crates/gateway/build.rs bundles this module (with esbuild, see
// bundle.mjs) into the /privacy.js the gateway serves; missing-privacy.js stands in for it in
// a build made without node_modules, with the same exports. The protocol itself (Oblivious
// HTTP framing, Binary HTTP, tokens, receipts) is Gondola's own: /oblivious.js.

export { Aes128Gcm, Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
export { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
export { XWing } from "@hpke/hybridkem-x-wing";
export { RSABSSA } from "@cloudflare/blindrsa-ts";
export { ed25519 } from "@noble/curves/ed25519";
export { sha256 } from "@noble/hashes/sha2";

/** This build has the library. */
export const available = true;
