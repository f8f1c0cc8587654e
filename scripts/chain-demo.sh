#!/usr/bin/env bash
# Gondola in chain mode on a local chain, in two commands, each in its own terminal:
#
#   scripts/chain-demo.sh anvil   # a local chain (anvil, from contracts/'s npm packages), a block a second
#   scripts/chain-demo.sh serve   # the suite deployed to it, a demo wallet funded, `gondola serve` in chain mode
#
# `serve` deploys the contracts with anvil's first development key (the deployer and operator),
# airdrops 20,000 VVV to anvil's second development account, writes the deployment, the
# airdrop's proofs and a [gateway.chain] configuration under target/chain-demo, and runs
# `gondola serve` with it: the web app on http://127.0.0.1:8844, whose wallet page offers the
# demo wallet its airdrop, reads the contracts and sends transactions straight to anvil. Run again against the same anvil, it
# keeps the deployment. Both keys are anvil's well-known public test keys, for a local chain
# only. Extra arguments after `serve` go to `gondola serve`.
#
# Environment: GONDOLA_DEMO_RPC_URL (default http://127.0.0.1:8545), GONDOLA_DEMO_DIR (default
# target/chain-demo), GONDOLA_BIN (a gondola binary to use instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."

rpc_url="${GONDOLA_DEMO_RPC_URL:-http://127.0.0.1:8545}"
dir="${GONDOLA_DEMO_DIR:-target/chain-demo}"
deployer_key=ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
holder_key=59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
holder=0x70997970C51812dc3A010C7d01b50e0d17dc79C8

install_contracts() {
  if [ ! -x contracts/node_modules/.bin/anvil ]; then
    scripts/system-deps.sh
    (cd contracts && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The JSON-RPC result of METHOD with PARAMS (a JSON array), or nothing.
rpc() {
  curl -sf -H 'content-type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$rpc_url" |
    sed -n 's/.*"result":"\([^"]*\)".*/\1/p'
}

case "${1:-}" in
  anvil)
    install_contracts
    port="${rpc_url##*:}"
    exec contracts/node_modules/.bin/anvil --host 127.0.0.1 --port "${port%%/*}" --chain-id 31337 --block-time 1
    ;;
  serve)
    shift
    ;;
  *)
    echo "usage: scripts/chain-demo.sh anvil | serve [gondola serve arguments]" >&2
    exit 2
    ;;
esac

if [ -z "$(rpc eth_chainId '[]')" ]; then
  echo "no chain answers at $rpc_url: start one first with scripts/chain-demo.sh anvil" >&2
  exit 1
fi
if [ -n "${GONDOLA_BIN:-}" ]; then
  gondola="$GONDOLA_BIN"
else
  scripts/system-deps.sh
  scripts/web-deps.sh
  cargo build --release --locked -p gondola
  gondola=target/release/gondola
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
printf '%s\n' "$deployer_key" > "$dir/deployer.key"
printf '%s\n' "$holder_key" > "$dir/holder.key"
export GONDOLA_RPC_URL="$rpc_url" GONDOLA_DEPLOYMENT="$dir/deployment.json" GONDOLA_WALLET="$dir/holder.key"

# Deployed on this chain already (the staking contract has code there)?
staking="$(sed -n 's/.*"staking": *"\(0x[0-9a-fA-F]*\)".*/\1/p' "$dir/deployment.json" 2>/dev/null || true)"
code=""
if [ -n "$staking" ]; then
  code="$(rpc eth_getCode "[\"$staking\",\"latest\"]")"
fi
if [ -z "$code" ] || [ "$code" = "0x" ]; then
  printf '%s,20000\n' "$holder" > "$dir/airdrop.csv"
  "$gondola" chain deploy --json --rpc-url "$rpc_url" --key "$dir/deployer.key" \
    --airdrop "$dir/airdrop.csv" --proofs "$dir/airdrop-proofs.json" > "$dir/deployment.json.new"
  mv "$dir/deployment.json.new" "$dir/deployment.json"
  rm -rf "$dir/data"
fi

cat > "$dir/gondola.toml" <<EOF
# Written by scripts/chain-demo.sh: Gondola in chain mode on the local chain at $rpc_url.
[gateway.ledger]

[gateway.chain]
rpc_url = "$rpc_url"
public_rpc_url = "$rpc_url"
deployment = "$dir/deployment.json"
airdrop_proofs = "$dir/airdrop-proofs.json"
confirmations = 2
poll_ms = 1000
anchor_key = "$dir/deployer.key"
anchor_every_ms = 60000
EOF

cat <<EOF
Chain mode on $rpc_url: the suite is at $dir/deployment.json.
The airdrop holds 20,000 VVV for the demo wallet $holder. Its key (anvil's second development
key, public, for local chains only) is in $dir/holder.key:
  $holder_key
Open http://127.0.0.1:8844/#wallet, import that key (or connect a browser wallet holding it),
claim the airdrop, then stake VVV, mint DIEM and stake it, and mint an API key: a chat paid by
it spends the staked DIEM's allowance. The same wallet from the
command line: GONDOLA_RPC_URL=$rpc_url GONDOLA_DEPLOYMENT=$dir/deployment.json GONDOLA_WALLET=$dir/holder.key gondola chain balance
EOF
exec "$gondola" serve --config "$dir/gondola.toml" --data-dir "$dir/data" "$@"
