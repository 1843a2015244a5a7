#!/usr/bin/env bash
# The benchmark harness (src/bin/anteroom-bench) on a release build, for the
# numbers in docs/benchmarks.md. Arguments go to `anteroom-bench run`; by
# default both backend sets, every scenario, full size:
#
#   scripts/bench.sh                                 # what docs/benchmarks.md shows
#   scripts/bench.sh --backend embedded --scenario joins --joins 50000
#   BENCH_PROFILE=debug scripts/bench.sh --fans 300 --workers 2 ...   # smoke
#
# The production set needs Redis on 127.0.0.1:6379 and MariaDB/MySQL with a
# user anteroom/anteroom that may create anteroom* databases (as for the
# tests); Kafka is a MockCluster inside the harness. Results: a table on
# stdout and target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --locked --release --bin anteroom --bin anteroom-bench
else
  # Every target, as `cargo test` builds them: the same feature resolution,
  # so a smoke run after the tests rebuilds nothing.
  cargo build --locked --all-targets
fi
# 15,000 fans need 15,000+ sockets in the gateway; each process may hold
# 20,000 files here, which the harness's client processes share out.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ $# -eq 0 ]; then
  set -- --backend embedded production
fi
exec "target/$profile/anteroom-bench" run "$@"
