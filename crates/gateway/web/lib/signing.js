// The signing library of Gondola's web app: what the wallet page uses of viem, and nothing
// more. crates/gateway/build.rs bundles this module (with esbuild, see bundle.mjs) into the
// /signing.js the gateway serves; missing-signing.js stands in for it in a build made without
// node_modules, with the same exports.

export { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

/** This build has the library. */
export const available = true;
