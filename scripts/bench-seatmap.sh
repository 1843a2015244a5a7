#!/usr/bin/env bash
# Issue 15's seat-map figures (docs/benchmarks.md, "Issue 15: the seat map at
# arena size"): the bytes of one layout / availability / seat-list read of a
# SEATS-seat show, and availability reads per second with `wrk` while one
# fan holds a seat every HOLD_MS ms (and releases it, so every seat change
# is a pair).
#
#   scripts/bench-seatmap.sh                       # Redis + MariaDB, 20,000 seats
#   BACKEND=embedded scripts/bench-seatmap.sh
#   SEATS=2000 DURATION=10s CONNS=64 scripts/bench-seatmap.sh
#   CONNS=0 scripts/bench-seatmap.sh               # the holder alone, no reads
#   ENDPOINT=seats scripts/bench-seatmap.sh        # the one-object-per-seat list
#
# Needs a release build (`cargo build --release --bin anteroom`), `wrk`
# (Debian: apt-get install wrk), node (the holder), and for the production
# set Redis on 127.0.0.1:6379 and MariaDB with the test user (anteroom /
# anteroom may create anteroom* databases). It uses its own database and
# Redis key prefix, and removes both at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

SEATS=${SEATS:-20000}
DURATION=${DURATION:-20s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
HOLD_MS=${HOLD_MS:-10}
BACKEND=${BACKEND:-production}
ENDPOINT=${ENDPOINT:-availability}
run=seatmap$$
admin=bench-admin-key-$run
port=$((20000 + $$ % 20000))
base=http://127.0.0.1:$port

env=(ANTEROOM_LISTEN=127.0.0.1:$port ANTEROOM_ADMIN_KEY=$admin ANTEROOM_LOG_FORMAT=json
  RUST_LOG=warn ANTEROOM_SEED_DEMO=false ANTEROOM_AUTH_MODE=demo ANTEROOM_MAX_HOLDS=100000
  ANTEROOM_TICKET_SECRET=bench-ticket-secret-0123456789abcdef0123456789
  ANTEROOM_LIMITS__IP_PER_SECOND=1000000 ANTEROOM_LIMITS__IP_BURST=1000000
  ANTEROOM_LIMITS__IDENTITY_PER_SECOND=1000000 ANTEROOM_LIMITS__IDENTITY_BURST=1000000)
cleanup() {
  [ -n "${gateway:-}" ] && kill "$gateway" 2>/dev/null && wait "$gateway" 2>/dev/null || true
  [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null || true
  if [ "$BACKEND" = production ]; then
    mysql -uanteroom -panteroom -h127.0.0.1 -e "DROP DATABASE IF EXISTS anteroom_$run" || true
    redis-cli --scan --pattern "$run:*" | xargs -r redis-cli del >/dev/null || true
  fi
}
trap cleanup EXIT
if [ "$BACKEND" = production ]; then
  mysql -uanteroom -panteroom -h127.0.0.1 -e "CREATE DATABASE anteroom_$run"
  env+=(ANTEROOM_REDIS_URL=redis://127.0.0.1:6379 ANTEROOM_REDIS_PREFIX=$run:
    ANTEROOM_DATABASE_URL=mysql://anteroom:anteroom@127.0.0.1:3306/anteroom_$run)
fi
env "${env[@]}" target/release/anteroom >"${LOG:-/dev/null}" 2>&1 &
gateway=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

# Sections of 40 seats a row, 2,000 seats each (the last takes the rest).
sections=$(node -e "
  const seats = $SEATS, out = [];
  for (let i = 0, left = seats; left > 0; i++) {
    const n = Math.min(2000, left); left -= n;
    out.push({name: 'S' + (i + 1), rows: Math.ceil(n / 40), seats_per_row: Math.min(40, n), price: 10});
  }
  console.log(JSON.stringify(out));")
show=$(curl -sS -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d "{\"title\":\"Arena\",\"capacity\":10,\"session_ttl_seconds\":3600,\"seats\":$sections}" \
  "$base/v1/admin/shows" | node -e 'process.stdin.on("data", d => console.log(JSON.parse(d).id))')
seats=$(curl -sf "$base/v1/shows/$show/seats" | node -e '
  let b = ""; process.stdin.on("data", d => b += d).on("end", () => console.log(JSON.parse(b).length))')
echo "backend $BACKEND, show $show, $seats seats"

echo "bytes per read (identity / gzip / br):"
for path in layout availability seats; do
  sizes=""
  for enc in identity gzip br; do
    sizes="$sizes $(curl -s -o /dev/null -w '%{size_download}' -H "accept-encoding: $enc" "$base/v1/shows/$show/$path")"
  done
  echo "  $path:$sizes"
done

# The holder: one admitted fan holds a seat every HOLD_MS ms and releases it
# at once, walking over the show's seats.
node - "$base" "$show" "$HOLD_MS" <<'JS' &
const [base, show, every] = process.argv.slice(2);
const json = (r) => r.json();
(async () => {
  const fan = await fetch(`${base}/v1/sessions`, {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({username: 'holder'})}).then(json);
  const auth = {authorization: `Bearer ${fan.token}`, 'content-type': 'application/json'};
  const spot = await fetch(`${base}/v1/shows/${show}/queue`, {method: 'POST', headers: auth}).then(json);
  const layout = await fetch(`${base}/v1/shows/${show}/layout`).then(json);
  const ids = layout.sections.flatMap((s) => s.rows.flatMap((r) => r.seats.map((x) => x.seat_id)));
  let i = 0, holds = 0;
  const refused = {}, took = [];
  const started = Date.now();
  setInterval(async () => {
    const seat = ids[i++ % ids.length];
    const t0 = performance.now();
    const r = await fetch(`${base}/v1/shows/${show}/reservations`, {method: 'POST',
      headers: {...auth, 'x-access-token': spot.access_token}, body: JSON.stringify({seat_id: seat})});
    const hold = await r.json();
    if (r.status !== 201) { refused[hold.error?.code] = (refused[hold.error?.code] ?? 0) + 1; return; }
    took.push(performance.now() - t0);
    holds++;
    await fetch(`${base}/v1/reservations/${hold.reservation_id}`, {method: 'DELETE', headers: auth});
  }, Number(every));
  process.on('SIGTERM', () => {
    const s = (Date.now() - started) / 1000;
    took.sort((a, b) => a - b);
    const q = (p) => (took[Math.floor(p * (took.length - 1))] ?? 0).toFixed(1);
    console.log(`holder: ${holds} holds + releases in ${s.toFixed(1)} s (${(holds / s).toFixed(0)} holds/s), ` +
      `hold p50 ${q(0.5)} ms, p95 ${q(0.95)} ms; refused ${JSON.stringify(refused)}`);
    process.exit(0);
  });
})();
JS
holder=$!
sleep 2
if [ "$CONNS" = 0 ]; then
  sleep "${DURATION%s}"   # the holder alone
else
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$base/v1/shows/$show/$ENDPOINT"
fi
kill -TERM "$holder"; wait "$holder" || true
holder=
