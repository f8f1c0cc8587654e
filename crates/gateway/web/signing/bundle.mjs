// Bundles index.js and the viem modules it uses into one minified ES module, the web app's
// /signing.js. Run by crates/gateway/build.rs as `node bundle.mjs OUTFILE` when node_modules
// is installed; by hand the same way to look at the output.

import { readFileSync } from "node:fs";
import { build } from "esbuild";

const outfile = process.argv[2];
if (!outfile) {
  console.error("usage: node bundle.mjs OUTFILE");
  process.exit(2);
}
const viem = JSON.parse(readFileSync(new URL("./node_modules/viem/package.json", import.meta.url), "utf8"));

await build({
  entryPoints: [new URL("./index.js", import.meta.url).pathname],
  outfile,
  bundle: true,
  format: "esm",
  // Every browser the app supports has ES2022 (class fields, top-level await, BigInt).
  target: "es2022",
  platform: "browser",
  minify: true,
  // The same input gives the same bytes (and so the same ETag).
  sourcemap: false,
  legalComments: "eof",
  banner: { js: `/*! Gondola web app signing library: viem ${viem.version} (MIT), bundled by crates/gateway/build.rs from crates/gateway/web/signing/index.js */` },
  logLevel: "warning",
});
