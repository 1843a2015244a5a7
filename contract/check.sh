#!/usr/bin/env bash
# The served contract, checked against a fresh gateway on embedded backends:
#
# 1. /openapi.json validates (openapi-spec-validator);
# 2. /asyncapi.json validates (@asyncapi/parser, contract/asyncapi.mjs), its
#    examples against their payload schemas;
# 3. schemathesis runs every check on every operation with a bounded number
#    of examples (contract/schemathesis.toml), as a signed-in fan admitted to
#    a show, with the admin key.
#
# Env: ANTEROOM_BIN (default target/debug/anteroom), CONTRACT_PORT (18090),
# CONTRACT_EXAMPLES (schemathesis examples per operation; the config's 30).
# The Python tools come from contract/requirements.txt into
# target/contract-venv, the parser from contract/package-lock.json. Exits
# non-zero on any failure; the gateway is always stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${CONTRACT_PORT:-18090}"
BASE_URL="http://127.0.0.1:${PORT}"
BIN="${ANTEROOM_BIN:-target/debug/anteroom}"
VENV=target/contract-venv

log() { printf '\n== %s\n' "$*" >&2; }

[ -x "$BIN" ] || { echo "no gateway binary at $BIN: cargo build, or set ANTEROOM_BIN" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------
if ! cmp -s contract/requirements.txt "$VENV/requirements.txt" 2>/dev/null; then
  log "installing contract/requirements.txt into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r contract/requirements.txt
  cp contract/requirements.txt "$VENV/requirements.txt"
fi
(cd contract && npm ci --no-audit --no-fund --silent)

# ---- gateway -----------------------------------------------------------------
if curl -s -o /dev/null --max-time 2 "$BASE_URL/healthz"; then
  echo "something already answers on $BASE_URL; stop it or set CONTRACT_PORT" >&2
  exit 1
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/contract.XXXXXX")"
GW_LOG="$WORK/gateway.log"
ADMIN_KEY="contract-admin-$RANDOM$RANDOM"
# shellcheck source=scripts/embedded-gateway.sh
. scripts/embedded-gateway.sh
stop_gateway_on_exit "$WORK" "$GW_LOG"

log "starting $BIN on $BASE_URL (embedded backends)"
start_gateway "$BIN" "$PORT" "$GW_LOG" "$ADMIN_KEY"

# ---- 1 and 2: the documents --------------------------------------------------
log "openapi-spec-validator $BASE_URL/openapi.json"
curl -sf "$BASE_URL/openapi.json" -o "$WORK/openapi.json"
"$VENV/bin/openapi-spec-validator" "$WORK/openapi.json"

log "@asyncapi/parser $BASE_URL/asyncapi.json"
curl -sf "$BASE_URL/asyncapi.json" -o "$WORK/asyncapi.json"
node contract/asyncapi.mjs "$WORK/asyncapi.json"

# ---- 3: schemathesis ---------------------------------------------------------
# One fan, signed in and admitted to a show with seats (capacity 1, a day's
# session), so the operations behind those credentials are reached too.
json() { "$VENV/bin/python" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
post() { curl -sf -X POST -H 'Content-Type: application/json' "$@"; }
CONTRACT_TOKEN="$(post "$BASE_URL/v1/sessions" -d '{"username":"contract-fan"}' | json "['token']")"
SHOW="$(post "$BASE_URL/v1/admin/shows" -H "Authorization: Bearer $ADMIN_KEY" \
  -d '{"title":"Contract","capacity":1,"session_ttl_seconds":86400,
       "seats":[{"name":"Floor","rows":2,"seats_per_row":5,"price":10}]}' | json "['id']")"
[ "$SHOW" = 1 ] || { echo "the check's show is $SHOW, not 1 (schemathesis.toml names it)" >&2; exit 1; }
post "$BASE_URL/v1/shows/$SHOW/queue" -H "Authorization: Bearer $CONTRACT_TOKEN" >"$WORK/join.json"
CONTRACT_TICKET="$(json "['ticket']" <"$WORK/join.json")"
CONTRACT_ACCESS="$(json "['access_token']" <"$WORK/join.json")"
CONTRACT_ADMIN_KEY="$ADMIN_KEY"
# schemathesis's and Hypothesis's own files stay under target/.
CONTRACT_CACHE=target/contract-cache
export HYPOTHESIS_STORAGE_DIRECTORY=target/contract-hypothesis
export CONTRACT_TOKEN CONTRACT_TICKET CONTRACT_ACCESS CONTRACT_ADMIN_KEY CONTRACT_CACHE

log "schemathesis, every check (show $SHOW)"
examples=()
[ -n "${CONTRACT_EXAMPLES:-}" ] && examples=(--max-examples "$CONTRACT_EXAMPLES")
started=$SECONDS
"$VENV/bin/schemathesis" --config-file contract/schemathesis.toml run \
  "$WORK/openapi.json" --url "$BASE_URL" --checks all "${examples[@]}" \
  --workers 1 --request-timeout 10 --no-color \
  --report junit --report-dir "$WORK/report"
log "schemathesis: $((SECONDS - started)) s"

# A 5xx anywhere is a defect, whatever a check made of it.
if grep -q 'panicked' "$GW_LOG"; then
  echo "the gateway log has a panic:" >&2
  grep -m 5 'panicked' "$GW_LOG" >&2
  exit 1
fi
echo "contract: both documents valid; schemathesis passed" >&2
