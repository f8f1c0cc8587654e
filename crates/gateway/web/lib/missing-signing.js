// Stands in for the web app's signing library (signing.js bundled with viem) in a gateway built
// without its node_modules: same exports, and a plain statement of what is missing.

/** This build lacks the library. */
export const available = false;

export const missing =
  "This gateway was built without the web app's signing library (viem), so this page cannot sign. " +
  "Build it with scripts/serve.sh, or run `npm ci` in crates/gateway/web/lib and build again. " +
  "The CLI signs the same operations: gondola wallet, stake, diem, key.";

function unavailable() {
  throw new Error(missing);
}

export const generatePrivateKey = unavailable;
export const privateKeyToAccount = unavailable;
