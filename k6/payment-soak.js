// payment-soak: a steady stream of payments for several minutes.
//
// setup() creates a show with room for everyone at once (capacity and
// seats >= the iterations the run can start) and admits a pool of fans
// (sign in + join, all active at once), so an iteration is only the sale:
// hold a seat → charge its price → pay with an Idempotency-Key. Iterations
// arrive at a constant rate (constant-arrival-rate), each with its own fan
// and its own seat, so nothing contends and any slowdown is the gateway's.
//
// Checks: no errors (soak_errors == 0, every step's answer as documented),
// p95 and p99 of each step, and the same bounds on the last third of the
// run alone (tag phase:late) so latency that creeps up over time fails the
// run even when the early minutes pull the overall percentiles down.
// teardown: no seat is left `held` (every hold was paid).
//
// Env: RATE (10 payments/s), DURATION (5m), PRE_VUS (20), MAX_VUS (200),
// P95_MS (300), P99_MS (800). SMOKE=1: 10/s for 6 s.
// The pool is RATE × DURATION fans (plus 5%), at most 50,000 (the seat
// limit of one show); setup admits them in batches of 100.

import exec from 'k6/execution';
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import {
  BASE_THRESHOLDS, batchAll, charge, createShow, durationSecs, envNum, envStr, hold, pay,
  runPrefix, seatMap, seatAt, seatRange, BASE_URL,
} from './lib/anteroom.js';

const RATE = envNum('RATE', 10, 10);
const DURATION = envStr('DURATION', '5m', '6s');
const PRE_VUS = envNum('PRE_VUS', 20, 5);
const MAX_VUS = envNum('MAX_VUS', 200, 50);
const P95_MS = envNum('P95_MS', 300, 300);
const P99_MS = envNum('P99_MS', 800, 800);
const PRICE = 50;

const DURATION_S = durationSecs(DURATION);
const POOL = Math.ceil(RATE * DURATION_S * 1.05) + 10;
if (POOL > 50000) {
  throw new Error(`RATE × DURATION needs ${POOL} fans and seats; one show has at most 50,000 seats`);
}

const latency = [`p(95)<${P95_MS}`, `p(99)<${P99_MS}`];
export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: '30s',
    },
  },
  setupTimeout: `${Math.max(60, Math.ceil(POOL / 100) * 3)}s`,
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    http_req_failed: ['rate==0'],
    soak_errors: ['count==0'],
    payments_completed: ['count>0'],
    'http_req_duration{step:hold}': latency,
    'http_req_duration{step:charge}': latency,
    'http_req_duration{step:pay}': latency,
    'http_req_duration{step:pay,phase:late}': latency,
    'http_req_duration{step:hold,phase:late}': latency,
    sale_duration: [`p(95)<${3 * P95_MS}`, `p(99)<${3 * P99_MS}`],
    dropped_iterations: [`count<=${Math.ceil(RATE)}`],
    teardown_seats_still_held: ['count==0'],
  }),
};

const saleDuration = new Trend('sale_duration', true);
const payments = new Counter('payments_completed');
const errors = new Counter('soak_errors');
const stillHeld = new Counter('teardown_seats_still_held');

export function setup() {
  const perRow = Math.min(POOL, 100);
  const { show, seats } = createShow({
    title: `k6 payment-soak ${new Date().toISOString()}`,
    capacity: POOL,
    session_ttl_seconds: Math.min(86400, Math.ceil(DURATION_S) + 900),
    seats: [{ name: 'Stalls', rows: Math.ceil(POOL / perRow), seats_per_row: perRow, price: PRICE }],
  });
  const prefix = runPrefix('soak');
  const json = { 'content-type': 'application/json' };

  // Sign in and admit the pool, 100 requests at a time.
  const names = Array.from({ length: POOL }, (_, i) => `${prefix}-${i}`);
  const signIns = batchAll(names.map((username) => ({
    method: 'POST', url: `${BASE_URL}/v1/sessions`, body: JSON.stringify({ username }),
    params: { headers: json, tags: { name: 'POST /v1/sessions', step: 'setup' } },
  })), 100);
  const tokens = signIns.map((r, i) => {
    if (r.status !== 201) fail(`sign in ${names[i]}: ${r.status} ${r.body}`);
    return r.json('token');
  });
  const joins = batchAll(tokens.map((t) => ({
    method: 'POST', url: `${BASE_URL}/v1/shows/${show.id}/queue`, body: null,
    params: { headers: { authorization: `Bearer ${t}` }, tags: { name: 'POST /v1/shows/{id}/queue', step: 'setup' } },
  })), 100);
  const fans = joins.map((r, i) => {
    if (r.status !== 201 || r.json('state') !== 'active') {
      fail(`join of ${names[i]}: ${r.status} ${String(r.body).slice(0, 200)} (expected 201 active)`);
    }
    return [tokens[i], r.json('access_token')];
  });
  errors.add(0);
  stillHeld.add(0);
  return { showId: show.id, seats: seatRange(seats), fans, startedAt: Date.now() };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  if (i >= data.fans.length) {
    errors.add(1, { why: 'pool_exhausted' });
    return;
  }
  const [token, access] = data.fans[i];
  const elapsed = (Date.now() - data.startedAt) / 1000;
  const phase = elapsed < DURATION_S / 3 ? 'early' : elapsed < (2 * DURATION_S) / 3 ? 'mid' : 'late';
  const tags = { tags: { phase } };
  const t0 = Date.now();

  const h = hold(data.showId, token, access, seatAt(data.seats, i), tags);
  if (!check(h, { 'hold 201': (r) => r.status === 201 })) {
    errors.add(1, { why: 'hold' });
    console.warn(`hold: ${h.status} ${String(h.body).slice(0, 200)}`);
    return;
  }
  const reservation = h.json();
  const c = charge(token, reservation.price, tags);
  if (!check(c, { 'charge 200, balance = price': (r) => r.status === 200 && r.json('balance') === reservation.price })) {
    errors.add(1, { why: 'charge' });
    console.warn(`charge: ${c.status} ${String(c.body).slice(0, 200)}`);
    return;
  }
  const p = pay(token, access, reservation.reservation_id, `soak-${i}`, tags);
  if (!check(p, {
    'pay 201 completed, balance 0': (r) => r.status === 201 && r.json('status') === 'completed' && r.json('balance') === 0,
  })) {
    errors.add(1, { why: 'pay' });
    console.warn(`pay: ${p.status} ${String(p.body).slice(0, 200)}`);
    return;
  }
  payments.add(1);
  saleDuration.add(Date.now() - t0, { phase });
}

export function teardown(data) {
  const res = seatMap(data.showId, 'teardown');
  if (!check(res, { 'teardown seat map 200': (r) => r.status === 200 })) return;
  const map = res.json();
  const held = map.filter((s) => s.status === 'held').length;
  const sold = map.filter((s) => s.status === 'sold').length;
  stillHeld.add(held);
  console.log(`teardown: ${sold} seats sold, ${held} held, ${map.length - sold - held} available`);
}
