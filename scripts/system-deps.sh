#!/usr/bin/env bash
# Installs the Debian packages Gondola needs to build and test, if any are missing:
# cmake, clang and libclang-dev build llama.cpp and its bindings; python3-venv makes the venv
# the OpenAI SDK test runs in; node and npm install and bundle the web app's libraries;
# espeak-ng (phonemes) and ffmpeg (audio formats) are the speech voice's helper programs, run
# as separate processes; curl is how scripts/chain-demo.sh asks the chain whether it is there.
# With --tests, also chromium for the web app's browser suite (playwright-core drives Debian's
# Chromium; no browser is downloaded), redis-server, the store gateway replicas share (the
# tests start their own on a Unix socket), postgresql, which holds the ledger journal they
# share (the tests run their own servers too, as the postgres user when run as root), and
# nginx-light, the load balancer in front of them in the cluster example.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${1:-}" = "--tests" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  # The tests stop servers with kill(1) and run PostgreSQL as its own user with setpriv(1).
  [ -x /bin/kill ] || [ -x /usr/bin/kill ] || missing+=(procps)
  command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "gondola: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
