#!/usr/bin/env bash
# Builds Gondola (release) and runs `gondola serve`: the gateway on http://127.0.0.1:8844 (the
# web app included, with its libraries installed by npm and bundled into the binary) and a
# provider with the embedded default model, downloaded and verified on first start.
# Extra arguments go to `gondola serve` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh
scripts/web-deps.sh
exec cargo run --release --locked -p gondola -- serve "$@"
