#!/usr/bin/env bash
# The live alert drill (docs/runbook.md, "Live drill"): a gateway on Redis +
# MySQL, scraped by a real Prometheus evaluating alerts/anteroom.rules.yml,
# which sends to a real Alertmanager using alerts/alertmanager.yml, whose
# webhook receivers post to a small relay that logs what it gets. Then the
# fault: the drill's own Redis is stopped. The script waits for
# AnteroomRedisErrors to reach Alertmanager and the pager webhook, prints the
# timeline, starts Redis again and waits for the alert to resolve.
#
# Needs: prometheus, prometheus-alertmanager (Debian packages), redis-server,
# MariaDB/MySQL on 127.0.0.1:3306 with the anteroom user .ci/run creates,
# python3. Uses ports 8090 (gateway), 6390 (its Redis), 9090, 9093, 9095;
# leaves the machine's own Redis alone. Everything it starts is stopped on
# exit; its files are in $DRILL_DIR (default: a fresh temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${DRILL_DIR:-$(mktemp -d /tmp/anteroom-drill.XXXXXX)}
mkdir -p "$DIR"
GATEWAY=127.0.0.1:8090
REDIS_PORT=6390
PIDS=()

log() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
wait_for() { # description, seconds, command...
  local what=$1 limit=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start > limit)); then
      log "timed out after ${limit}s waiting for: $what" >&2
      exit 1
    fi
    sleep 1
  done
  log "$what (after $((SECONDS - start))s)"
}

BIN=${ANTEROOM_BIN:-$ROOT/target/release/anteroom}
[ -x "$BIN" ] || cargo build --release --locked --bin anteroom

log "drill files in $DIR"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$DIR/redis.log"
wait_for "the drill's Redis answers" 10 redis-cli -p "$REDIS_PORT" ping

# The webhook relay: Alertmanager's receivers post here; each notification
# is one line in relay.log.
cat >"$DIR/relay.py" <<'PY'
import http.server, json, sys, datetime
class Relay(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for a in body.get("alerts", []):
            line = "%s %s %s %s %s" % (datetime.datetime.utcnow().strftime("%H:%M:%S"), self.path,
                a["status"], a["labels"].get("alertname"), a["labels"].get("severity"))
            print(line, flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", 9095), Relay).serve_forever()
PY
python3 "$DIR/relay.py" >"$DIR/relay.log" 2>&1 &
PIDS+=($!)

mysql --protocol=tcp -h 127.0.0.1 -uanteroom -panteroom \
  -e 'DROP DATABASE IF EXISTS anteroom_drill; CREATE DATABASE anteroom_drill'
ANTEROOM_LISTEN=$GATEWAY \
ANTEROOM_REDIS_URL=redis://127.0.0.1:$REDIS_PORT \
ANTEROOM_REDIS_PREFIX=drill: \
ANTEROOM_DATABASE_URL=mysql://anteroom:anteroom@127.0.0.1:3306/anteroom_drill \
ANTEROOM_SEED_DEMO=true \
ANTEROOM_AUTH_MODE=demo \
ANTEROOM_LOG_FORMAT=json \
  "$BIN" >"$DIR/gateway.log" 2>&1 &
PIDS+=($!)
wait_for "the gateway is ready" 60 curl -fsS "http://$GATEWAY/readyz"

cat >"$DIR/prometheus.yml" <<YML
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $ROOT/alerts/anteroom.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:9093"]
scrape_configs:
  - job_name: anteroom
    static_configs:
      - targets: ["$GATEWAY"]
YML
prometheus-alertmanager --config.file="$ROOT/alerts/alertmanager.yml" \
  --storage.path="$DIR/alertmanager" --web.listen-address=127.0.0.1:9093 \
  --cluster.listen-address= >"$DIR/alertmanager.log" 2>&1 &
PIDS+=($!)
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prometheus" \
  --web.listen-address=127.0.0.1:9090 >"$DIR/prometheus.log" 2>&1 &
PIDS+=($!)
up() {
  curl -fsS 'http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22anteroom%22%7D' |
    grep -q '"value":\[[0-9.]*,"1"\]'
}
wait_for "Prometheus scrapes the gateway (up == 1)" 60 up
firing() { amtool alert query --alertmanager.url=http://127.0.0.1:9093 "alertname=$1" | grep -q "$1"; }
if firing AnteroomRedisErrors; then
  log "AnteroomRedisErrors already firing before the fault" >&2
  exit 1
fi

log "FAULT: stopping the gateway's Redis"
FAULT_AT=$SECONDS
redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
# Fans keep arriving while Redis is down: joins fail with 503.
curl -s -o /dev/null -w "  a join while Redis is down answers %{http_code}\n" \
  -X POST "http://$GATEWAY/v1/shows/1/queue" \
  -H "authorization: Bearer $(curl -s -X POST "http://$GATEWAY/v1/sessions" \
    -H 'content-type: application/json' -d '{"username":"drill-fan"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
wait_for "Prometheus has AnteroomRedisErrors firing" 120 \
  sh -c "curl -fsS http://127.0.0.1:9090/api/v1/alerts | grep -q '\"alertname\":\"AnteroomRedisErrors\",.*\"state\":\"firing\"'"
wait_for "Alertmanager holds AnteroomRedisErrors" 60 firing AnteroomRedisErrors
wait_for "the pager webhook received AnteroomRedisErrors" 60 \
  grep -q "/pager firing AnteroomRedisErrors P1" "$DIR/relay.log"
log "detected and paged $((SECONDS - FAULT_AT))s after the fault"
amtool alert query --alertmanager.url=http://127.0.0.1:9093

log "RECOVERY: starting the gateway's Redis again"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile "$DIR/redis.log"
wait_for "the gateway is ready again" 60 curl -fsS "http://$GATEWAY/readyz"
not_firing() { ! firing "$1"; }
wait_for "Alertmanager has AnteroomRedisErrors resolved" 180 not_firing AnteroomRedisErrors
log "relay log:"
sed 's/^/  /' "$DIR/relay.log"
