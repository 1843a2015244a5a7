#!/usr/bin/env bash
# Runs the README's "Try it" exactly as written (the blocks between
# <!-- try-it:start --> and <!-- try-it:end -->), so it cannot rot: the
# first block (the gateway) with the built binary in place of `cargo run
# --release`, on a free port in place of 8080; the others in order, in one
# shell, in a scratch directory. Then checks what a newcomer would see: the
# admin key taken from the log, alice admitted and paid, bob's WebSocket
# pushed his rank and then `active`.
#
# Needs curl, jq and python3; installs the README's pinned websockets with
# pip when missing. ANTEROOM_BIN: the gateway (default target/debug/anteroom).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${ANTEROOM_BIN:-target/debug/anteroom}
[[ $BIN = /* ]] || BIN="$ROOT/$BIN"

block() { # the README's try-it sh blocks, one per line of the form "#N" + its text
  awk '/<!-- try-it:start -->/{on=1} /<!-- try-it:end -->/{on=0}
       on && /^```sh$/{n++; print "#" n; code=1; next}
       on && /^```$/{code=0; next}
       on && code' README.md
}
blocks=$(block)
[[ -n $blocks ]] || { echo "try-it: no blocks in README.md" >&2; exit 1; }
server=$(awk '/^#1$/{on=1; next} /^#[0-9]+$/{on=0} on' <<<"$blocks")
rest=$(awk '/^#1$/{skip=1; next} /^#[0-9]+$/{skip=0; next} !skip' <<<"$blocks")
[[ $server == 'cargo run --release | tee anteroom.log' ]] \
  || { echo "try-it: the first block is not the gateway: $server" >&2; exit 1; }

websockets=$(grep -o 'websockets==[0-9.]*' README.md | head -1)
if ! python3 -c "import websockets, sys; sys.exit(websockets.__version__ != '${websockets#*==}')" 2>/dev/null; then
  python3 -m pip install --quiet "$websockets" \
    || python3 -m pip install --quiet --break-system-packages "$websockets"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
# The gateway and the blocks each run in a process group of their own
# (setsid), so that everything they start (the WebSocket client and its
# sleep included) is stopped with them.
gateway=""
blocks_pid=""
cleanup() {
  [[ -n $blocks_pid ]] && kill -- "-$blocks_pid" 2>/dev/null || true
  [[ -n $gateway ]] && kill -- "-$gateway" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# The first block, with the binary for `cargo run --release`.
setsid env -u ANTEROOM_ADMIN_KEY ANTEROOM_LISTEN="127.0.0.1:$port" ANTEROOM_SHUTDOWN_DRAIN_SECS=0 \
  bash -c "${server/cargo run --release/\"$BIN\"} > /dev/null" > /dev/null 2>&1 &
gateway=$!
for _ in $(seq 100); do
  grep -q '"anteroom listening"' anteroom.log 2>/dev/null && break
  sleep 0.1
done
grep -q '"anteroom listening"' anteroom.log || { echo "try-it: the gateway did not start" >&2; cat anteroom.log >&2; exit 1; }

# The other blocks, in one shell, as written (the port aside).
script="set -euo pipefail
${rest//localhost:8080/localhost:$port}
wait_for() { for _ in \$(seq 100); do grep -q \"\$1\" bob.ws && return; sleep 0.1; done; return 1; }
wait_for '\"type\":\"active\"' || { echo 'try-it: bob was never pushed active' >&2; cat bob.ws >&2; exit 1; }
[[ -n \$ADMIN && \$ADMIN != null ]]
grep -q '\"type\":\"rank\",\"rank\":1' bob.ws || { echo 'try-it: bob had no rank 1' >&2; exit 1; }
"
# Bounded: the README waits for Bob's frames, which a broken gateway never sends.
setsid timeout 180 bash -c "$script" > out.txt 2>&1 &
blocks_pid=$!
if ! wait "$blocks_pid"; then
  cat out.txt >&2
  echo "try-it: the README's blocks failed (above)" >&2
  exit 1
fi
cat out.txt
grep -q '"status":"completed"' out.txt || { echo "try-it: alice's payment did not complete" >&2; exit 1; }
echo "try-it: the README's Try it ran as written"
