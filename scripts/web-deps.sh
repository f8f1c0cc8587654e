#!/usr/bin/env bash
# Installs the web app's one third-party library (viem, and esbuild to bundle it) from
# crates/gateway/web/signing/package-lock.json with `npm ci`, so that the cargo build that
# follows embeds the full wallet page (crates/gateway/build.rs bundles it when it is there).
# Skipped when node_modules is already what the lock file says: a fresh install would make
# cargo rebuild the gateway for nothing.
set -euo pipefail
cd "$(dirname "$0")/../crates/gateway/web/signing"

installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt package-lock.json ] && [ "$installed" -nt package.json ]; then
  exit 0
fi
echo "gondola: installing the web app's signing library (npm ci in $(pwd))" >&2
npm ci --no-audit --no-fund --loglevel=error
