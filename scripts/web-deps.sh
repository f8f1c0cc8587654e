#!/usr/bin/env bash
# Installs the web app's third-party libraries (viem for the wallet page; @hpke, blindrsa-ts and
# @noble for the private mode; esbuild to bundle them) from crates/gateway/web/lib/package-lock.json
# with `npm ci`, so that the cargo build that follows embeds the full app
# (crates/gateway/build.rs bundles them when they are there).
# Skipped when node_modules is already what the lock file says: a fresh install would make
# cargo rebuild the gateway for nothing.
set -euo pipefail
cd "$(dirname "$0")/../crates/gateway/web/lib"

installed=node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt package-lock.json ] && [ "$installed" -nt package.json ]; then
  exit 0
fi
echo "gondola: installing the web app's libraries (npm ci in $(pwd))" >&2
npm ci --no-audit --no-fund --loglevel=error
