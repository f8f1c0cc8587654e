#!/usr/bin/env bash
# Runs Gondola's whole test suite: a check that the contracts' committed artifacts are what the
# pinned solc-js compiles from their sources, formatting, lints, then every test (unit tests and
# the end-to-end tests, which pull the default model once and make a venv for the OpenAI SDK),
# then the web app's browser suite in Chromium against the debug binary those tests built (with
# the web app's libraries, which web-deps.sh installs before anything is built), then a short
# run of every fuzz target (GONDOLA_FUZZ_SECONDS each, 20 by default; scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh --tests
scripts/web-deps.sh
# The contracts' committed artifacts are what the pinned solc-js compiles from their sources.
(
  cd contracts
  npm ci --no-audit --no-fund --loglevel=error
  node build.mjs --check
)
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

cargo build -p gondola --locked
(
  cd tests/browser
  npm ci --no-audit --no-fund --loglevel=error
  node --test --test-concurrency=1
)

scripts/fuzz.sh "${GONDOLA_FUZZ_SECONDS:-20}"
