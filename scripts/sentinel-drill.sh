#!/usr/bin/env bash
# The Redis Sentinel failover drill, for real: a Redis primary, a replica and
# three Sentinels (Debian's redis-server and redis-sentinel) on spare
# loopback ports in a temporary directory, a gateway that finds the primary
# through them (ANTEROOM_REDIS_URL=redis+sentinel://...; in-process
# database, no Kafka), and a sale in progress (scripts/sentinel_drill.py:
# fans polling, admissions, joins). Mid-sale the primary is killed with
# SIGKILL; the drill reports how long joins got 503, how long Sentinel took,
# how many fans lost or changed their spot, and whether anyone was admitted
# twice (docs/benchmarks.md, "Redis Sentinel failover drill").
#
#   scripts/sentinel-drill.sh [SIZE] [driver options...]
#   scripts/sentinel-drill.sh 30                                    # CI size
#   ANTEROOM_BIN=target/release/anteroom scripts/sentinel-drill.sh 2000 --capacity 50 --threads 16
#
# SIZE fans wait in line when the primary dies (default 60). The gateway is
# ANTEROOM_BIN (default target/debug/anteroom, built if missing). Never
# touches the shared Redis on 6379. Exit status 1 if the gateway did not
# follow the failover, answered a failure other than 503 + Retry-After,
# admitted a fan twice or more fans than capacity, or if any fan lost their
# spot or session, changed place or was admitted out of order.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-60}
[ $# -gt 0 ] && shift
BIN=${ANTEROOM_BIN:-target/debug/anteroom}
[ -x "$BIN" ] || cargo build --locked --bin anteroom
for tool in redis-server redis-sentinel redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "sentinel-drill: $tool is missing (.ci/run installs it)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/anteroom-sentinel-drill.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_DRILL_DIR:-}" ]; then echo "sentinel-drill: logs in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
log() { printf '[sentinel-drill] %s\n' "$*" >&2; }

# Six spare loopback ports: primary, replica, three Sentinels, the gateway.
read -r P R S1 S2 S3 G < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "sentinel-drill: timed out waiting for $what" >&2; exit 1
}

mkdir -p "$DIR/primary" "$DIR/replica"
redis-server --bind 127.0.0.1 --port "$P" --dir "$DIR/primary" --save "" --appendonly no \
  --logfile "$DIR/primary.log" &
PRIMARY_PID=$!; PIDS+=("$PRIMARY_PID")
redis-server --bind 127.0.0.1 --port "$R" --dir "$DIR/replica" --save "" --appendonly no \
  --replicaof 127.0.0.1 "$P" --logfile "$DIR/replica.log" &
PIDS+=($!)
wait_for "the replica to sync" sh -c "redis-cli -p $R info replication | grep -q master_link_status:up"

for port in "$S1" "$S2" "$S3"; do
  mkdir -p "$DIR/sentinel-$port"
  cat >"$DIR/sentinel-$port/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $DIR/sentinel-$port
logfile $DIR/sentinel-$port.log
sentinel monitor drill 127.0.0.1 $P 2
sentinel down-after-milliseconds drill 1000
sentinel failover-timeout drill 10000
sentinel parallel-syncs drill 1
EOF
  redis-sentinel "$DIR/sentinel-$port/sentinel.conf" &
  PIDS+=($!)
done
for port in "$S1" "$S2" "$S3"; do
  wait_for "Sentinel $port to know the replica and the other Sentinels" sh -c \
    "redis-cli -p $port sentinel master drill | tr '\n' ' ' | grep -q 'num-slaves 1 .*num-other-sentinels 2 '"
done
log "primary :$P (pid $PRIMARY_PID), replica :$R, Sentinels :$S1 :$S2 :$S3"

ADMIN_KEY=drill-admin-key
env -u ANTEROOM_DATABASE_URL -u ANTEROOM_KAFKA_BROKERS -u ANTEROOM_CONFIG -u ANTEROOM_METRICS_LISTEN \
  ANTEROOM_LISTEN="127.0.0.1:$G" \
  ANTEROOM_REDIS_URL="redis+sentinel://127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3/drill" \
  ANTEROOM_REDIS_PREFIX="drill:" \
  ANTEROOM_AUTH_MODE=demo \
  ANTEROOM_ADMIN_KEY="$ADMIN_KEY" \
  ANTEROOM_TICKET_SECRET="sentinel-drill-$RANDOM$RANDOM$RANDOM" \
  ANTEROOM_SEED_DEMO=false \
  ANTEROOM_LIMITS__IP_PER_SECOND=1000000 ANTEROOM_LIMITS__IP_BURST=1000000 \
  ANTEROOM_LIMITS__IDENTITY_PER_SECOND=1000000 ANTEROOM_LIMITS__IDENTITY_BURST=1000000 \
  RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" >"$DIR/gateway.log" 2>&1 &
GW_PID=$!; PIDS+=("$GW_PID")
wait_for "the gateway to be ready" curl -sf --max-time 1 "http://127.0.0.1:$G/readyz"
log "gateway :$G ($BIN) on redis+sentinel://…/drill; $SIZE fans"

status=0
DRILL_ADMIN_KEY=$ADMIN_KEY python3 scripts/sentinel_drill.py --gateway "127.0.0.1:$G" \
  --primary-pid "$PRIMARY_PID" --sentinels "127.0.0.1:$S1,127.0.0.1:$S2,127.0.0.1:$S3" \
  --master drill --size "$SIZE" "$@" || status=$?
kill -0 "$GW_PID" 2>/dev/null || { log "the gateway exited"; status=1; }
if [ "$status" -ne 0 ]; then
  log "gateway log (last 40 lines):"; tail -40 "$DIR/gateway.log" >&2
fi
grep -E 'following the Redis primary|cannot find the Redis primary' "$DIR/gateway.log" | tail -3 >&2 || true
exit "$status"
