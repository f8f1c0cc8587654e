// Stands in for the private mode's cryptography (privacy.js bundled with @hpke, blindrsa-ts and
// @noble) in a gateway built without its node_modules: same exports, and a plain statement of
// what is missing.

/** This build lacks the library. */
export const available = false;

export const missing =
  "This gateway was built without the web app's cryptography libraries, so its private mode cannot seal requests. " +
  "Build it with scripts/serve.sh, or run `npm ci` in crates/gateway/web/lib and build again. " +
  "gondola proxy and gondola chat --private take the same private path.";

function unavailable() {
  throw new Error(missing);
}

export const Aes128Gcm = unavailable;
export const Aes256Gcm = unavailable;
export const CipherSuite = unavailable;
export const HkdfSha256 = unavailable;
export const DhkemX25519HkdfSha256 = unavailable;
export const XWing = unavailable;
export const RSABSSA = null;
export const ed25519 = null;
export const sha256 = unavailable;
