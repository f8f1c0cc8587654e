#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each (default 20): chat
# request bodies, model ids with suffixes, upstream server-sent events, ledger operations.
# Each starts from the corpus kept in fuzz/corpus/<target>; what it finds new goes to a
# temporary folder (fuzz/corpus stays as committed; `cargo fuzz cmin` there to grow it on
# purpose). A crash fails the run and leaves its input in fuzz/artifacts/<target>/.
# Installs cargo-fuzz if it is missing. cargo-fuzz passes -Z flags to rustc, which the stable
# toolchain takes with RUSTC_BOOTSTRAP=1; no sanitizer (the fuzzed code has no unsafe), with
# debug assertions on, so an overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "gondola: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none --debug-assertions
found="$(mktemp -d)"
trap 'rm -rf "$found"' EXIT
for target in $(cargo fuzz list); do
  echo "gondola: fuzzing $target for ${seconds} s" >&2
  mkdir -p "$found/$target"
  log="$found/$target.log"
  status=0
  cargo fuzz run "$target" --sanitizer none --debug-assertions "$found/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "gondola: fuzz target $target failed; its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
