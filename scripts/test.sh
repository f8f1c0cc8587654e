#!/usr/bin/env bash
# Runs Gondola's whole test suite: formatting, lints, then every test (unit tests and the
# end-to-end tests, which pull the default model once and make a venv for the OpenAI SDK).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
