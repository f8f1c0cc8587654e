// Bundles the web app's three third-party entry points, each with the library modules it uses,
// into one minified ES module apiece in OUTDIR: signing.js (viem's local accounts, for the
// wallet page), transactions.js (viem's client and contract actions, for its chain mode) and
// privacy.js (HPKE, blind RSA, Ed25519, for the private mode). Run by crates/gateway/build.rs as `node bundle.mjs OUTDIR` when node_modules is installed; by hand
// the same way to look at the output.

import { readFileSync } from "node:fs";
import { build } from "esbuild";

const outdir = process.argv[2];
if (!outdir) {
  console.error("usage: node bundle.mjs OUTDIR");
  process.exit(2);
}
const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version;

const entries = {
  signing: `viem ${version("viem")} (MIT)`,
  transactions: `viem ${version("viem")} (MIT)`,
  privacy: [
    `@hpke/core ${version("@hpke/core")} (MIT)`,
    `@hpke/dhkem-x25519 ${version("@hpke/dhkem-x25519")} (MIT)`,
    `@hpke/hybridkem-x-wing ${version("@hpke/hybridkem-x-wing")} (MIT)`,
    `mlkem ${version("mlkem")} (MIT)`,
    `@cloudflare/blindrsa-ts ${version("@cloudflare/blindrsa-ts")} (Apache-2.0)`,
    `@noble/curves ${version("@noble/curves")} (MIT)`,
    `@noble/hashes ${version("@noble/hashes")} (MIT)`,
  ].join(", "),
};

for (const [name, libraries] of Object.entries(entries)) {
  await build({
    entryPoints: [new URL(`./${name}.js`, import.meta.url).pathname],
    outfile: `${outdir}/${name}.js`,
    bundle: true,
    format: "esm",
    // Every browser the app supports has ES2022 (class fields, top-level await, BigInt).
    target: "es2022",
    platform: "browser",
    minify: true,
    // The same input gives the same bytes (and so the same ETag).
    sourcemap: false,
    legalComments: "eof",
    banner: { js: `/*! Gondola web app ${name} library: ${libraries}, bundled by crates/gateway/build.rs from crates/gateway/web/lib/${name}.js */` },
    logLevel: "warning",
  });
}
