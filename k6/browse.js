// browse: fans reading the seat map (GET /v1/shows/{id}/seats), the
// cheapest and most frequent request of a sale, served from the seat-map
// cache.
//
// Scenario `readers`: VUS fans read the map in a loop. Each answer must be
// 200 with `X-Cache: hit` or `miss`; cache_hit (the share of hits) must be
// above 90%.
// Scenario `churn` (one VU, unless CHURN=0): an admitted fan holds a seat,
// reads the map, releases the hold, reads again, every CHURN_INTERVAL
// seconds. Every change invalidates the cache, so the readers see some
// misses (realistic), and the read right after each change must show it
// (seat_map_fresh_after_change == 100%: the cache never serves a map from
// before the last change).
//
// Env: VUS (50), DURATION (1m), SEATS (2000), THINK (0.1 s between reads),
// CHURN (1), CHURN_INTERVAL (2 s). SMOKE=1: 10 VUs for 5 s.

import { check, fail, sleep } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import {
  BASE_THRESHOLDS, createShow, envNum, envStr, hold, join, release, runPrefix, seatMap, signIn,
} from './lib/anteroom.js';

const VUS = envNum('VUS', 50, 10);
const DURATION = envStr('DURATION', '1m', '5s');
const SEATS = envNum('SEATS', 2000, 500);
const THINK = envNum('THINK', 0.1, 0.05);
const CHURN = envNum('CHURN', 1, 1) > 0;
const CHURN_INTERVAL = envNum('CHURN_INTERVAL', 2, 1);

const scenarios = {
  readers: { executor: 'constant-vus', vus: VUS, duration: DURATION, exec: 'read' },
};
if (CHURN) {
  scenarios.churn = { executor: 'constant-vus', vus: 1, duration: DURATION, exec: 'churn' };
}

export const options = {
  scenarios,
  setupTimeout: '60s',
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    cache_hit: ['rate>0.9'],
    seat_map_reads: ['count>0'],
    'http_req_duration{scenario:readers}': ['p(95)<500'],
    seat_map_bad_answers: ['count==0'],
    seat_map_fresh_after_change: ['rate==1'],
  }),
};

const cacheHit = new Rate('cache_hit');
const reads = new Counter('seat_map_reads');
const bad = new Counter('seat_map_bad_answers');
const fresh = new Rate('seat_map_fresh_after_change');

export function setup() {
  const perRow = Math.min(SEATS, 50);
  const { show, seats } = createShow({
    title: `k6 browse ${new Date().toISOString()}`,
    capacity: 1000,
    session_ttl_seconds: 3600,
    seats: [{ name: 'Circle', rows: Math.ceil(SEATS / perRow), seats_per_row: perRow, price: 80 }],
  });
  let fan = null;
  if (CHURN) {
    const { token } = signIn(`${runPrefix('browse')}-churn`);
    const { body } = join(show.id, token);
    if (!body || body.state !== 'active') fail('the churn fan was not admitted on joining');
    fan = { token, access: body.access_token };
  }
  bad.add(0);
  return { showId: show.id, seatIds: seats.map((s) => s.seat_id), fan };
}

export function read(data) {
  // The body is not needed, only the status, the size and the cache header.
  const res = seatMap(data.showId, 'seat_map', { responseType: 'none' });
  reads.add(1);
  const xCache = res.headers['X-Cache'];
  const ok = check(res, {
    'seat map 200': (r) => r.status === 200,
    'X-Cache is hit or miss': () => xCache === 'hit' || xCache === 'miss',
    'seat map has a body': (r) => Number(r.headers['Content-Length'] || 0) > 2,
  });
  if (!ok) {
    bad.add(1);
    return;
  }
  cacheHit.add(xCache === 'hit');
  sleep(THINK);
}

function statusOf(showId, seatId) {
  const res = seatMap(showId, 'churn_read');
  if (res.status !== 200) return null;
  const seat = res.json().find((s) => s.seat_id === seatId);
  return seat ? seat.status : null;
}

export function churn(data) {
  const seatId = data.seatIds[Math.floor(Math.random() * data.seatIds.length)];
  const h = hold(data.showId, data.fan.token, data.fan.access, seatId, { tags: { step: 'churn_hold' } });
  if (check(h, { 'churn hold 201': (r) => r.status === 201 })) {
    fresh.add(statusOf(data.showId, seatId) === 'held', { change: 'hold' });
    const r = release(data.fan.token, h.json('reservation_id'), { tags: { step: 'churn_release' } });
    if (check(r, { 'churn release 204': (x) => x.status === 204 })) {
      fresh.add(statusOf(data.showId, seatId) === 'available', { change: 'release' });
    }
  }
  sleep(CHURN_INTERVAL);
}
