# Sourced by the scripts that drive a fresh gateway on embedded backends
# (scripts/k6-smoke.sh, contract/check.sh).
#
#   start_gateway BIN PORT LOG ADMIN_KEY   # starts it, waits until /readyz answers
#   stop_gateway                           # SIGTERM, then SIGKILL after 5 s
#   stop_gateway_on_exit WORK LOG          # the exit trap (below)
#
# Embedded backends: no Redis, MySQL, Kafka or config file from the caller's
# environment. No rate limits: every request comes from 127.0.0.1. GW_PID
# names the process while it runs.

GW_PID=""

start_gateway() {
  local bin=$1 port=$2 log=$3 admin_key=$4
  env -u ANTEROOM_REDIS_URL -u ANTEROOM_DATABASE_URL -u ANTEROOM_KAFKA_BROKERS \
      -u ANTEROOM_CONFIG -u ANTEROOM_METRICS_LISTEN \
      ANTEROOM_LISTEN="127.0.0.1:${port}" \
      ANTEROOM_ADMIN_KEY="$admin_key" \
      ANTEROOM_TICKET_SECRET="embedded-secret-$RANDOM$RANDOM$RANDOM" \
      ANTEROOM_SEED_DEMO=false \
      ANTEROOM_LOG_FORMAT=json \
      ANTEROOM_LIMITS__IP_PER_SECOND=1000000 ANTEROOM_LIMITS__IP_BURST=1000000 \
      ANTEROOM_LIMITS__IDENTITY_PER_SECOND=1000000 ANTEROOM_LIMITS__IDENTITY_BURST=1000000 \
      RUST_LOG="${RUST_LOG:-warn}" \
      "$bin" >"$log" 2>&1 &
  GW_PID=$!
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$GW_PID" 2>/dev/null; then echo "the gateway exited during start-up" >&2; return 1; fi
    if curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:${port}/readyz"; then return 0; fi
    sleep 0.2
  done
  echo "the gateway was not ready within 30 s" >&2
  return 1
}

stop_gateway() {
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -TERM "$GW_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
  fi
  GW_PID=""
}

# Sets the exit trap: the gateway stops; on failure the run's folder WORK is
# kept and the last lines of LOG are shown, else WORK is removed.
#   stop_gateway_on_exit WORK LOG
stop_gateway_on_exit() {
  GW_WORK=$1
  GW_LOG_FILE=$2
  trap _gateway_exit EXIT
  trap 'exit 130' INT TERM
}

_gateway_exit() {
  local rc=$?
  stop_gateway
  if [ "$rc" -ne 0 ]; then
    echo "--- kept in $GW_WORK; the gateway log's last lines:" >&2
    tail -n 30 "$GW_LOG_FILE" >&2 || true
  else
    rm -rf "$GW_WORK"
  fi
  exit "$rc"
}
