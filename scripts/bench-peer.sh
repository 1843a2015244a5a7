#!/usr/bin/env bash
# anteroom next to a minimal Socket.IO 4 server (bench/peer) on the same
# idle-connection and rank fan-out workload, interleaved (anteroom, peer,
# anteroom, peer…), with the ratios docs/benchmarks.md reports: bytes per
# idle connection, frames/s under a saturating fan-out, CPU per 1,000
# frames. Arguments go to `anteroom-bench peer`; by default full size
# (15,000 waiting fans plus 3,001 at the head), two runs of each:
#
#   scripts/bench-peer.sh
#   scripts/bench-peer.sh --repeats 3 --fanout-secs 20
#   BENCH_PROFILE=debug scripts/bench-peer.sh --fans 300 --workers 2 \
#     --fanout-probes 100 --fanout-secs 2 --repeats 1          # smoke
#
# Needs Node 20 and npm (the peer is installed from bench/peer's lock file
# with `npm ci`). Results: a line per run and the ratios on stdout, and
# target/bench/peer.json.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --locked --release --bin anteroom --bin anteroom-bench
else
  cargo build --locked --all-targets  # as `cargo test` resolves features: nothing rebuilt after it
fi
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "target/$profile/anteroom-bench" peer --peer-dir bench/peer "$@"
