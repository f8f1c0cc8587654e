#!/usr/bin/env bash
# Gondola's gateway side by side with TensorZero and LiteLLM, in front of the same instant
# upstream (nginx serving canned OpenAI replies): installs what it needs (Debian's nginx-light,
# and the two peers, pinned, in a venv under target/bench-peers), builds Gondola in release
# mode and runs `gondola-bench peers`, which writes bench/results/peers.{md,json}.
# The configurations here (nginx-mock.conf, litellm.yaml, tensorzero.toml, run_tensorzero.py)
# are the peers' own benchmark set-up, unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/system-deps.sh
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "gondola: installing nginx-light (the mock upstream)" >&2
  sudo_if_needed=""
  [ "$(id -u)" -ne 0 ] && sudo_if_needed="sudo"
  $sudo_if_needed apt-get install -y -q nginx-light >/dev/null
fi

venv=target/bench-peers/venv
if [ ! -x "$venv/bin/litellm" ] || [ ! -f "$venv/.pinned" ]; then
  echo "gondola: installing TensorZero and LiteLLM into $venv" >&2
  python3 -m venv "$venv"
  # LiteLLM is pinned: versions 1.82.7 and 1.82.8 on the registry were compromised.
  "$venv/bin/pip" install -q 'litellm[proxy]==1.106.2' 'tensorzero==2026.6.0'
  touch "$venv/.pinned"
fi

cargo build --release -p bench -p gondola
exec target/release/gondola-bench peers --gondola target/release/gondola --venv "$venv" "$@"
