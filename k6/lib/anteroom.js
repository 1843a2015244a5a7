// Shared helpers for the anteroom k6 scripts: configuration from the
// environment, one function per API call, and show creation for setup().
//
// Every request carries a `name` tag with the route template (never the raw
// URL, which would hold ids and tickets) and a `step` tag the scripts use for
// per-step thresholds.

import http from 'k6/http';
import encoding from 'k6/encoding';
import { check, fail } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const WS_URL = BASE_URL.replace(/^http/, 'ws');
export const ADMIN_KEY = __ENV.ADMIN_KEY || __ENV.ANTEROOM_ADMIN_KEY || '';
export const SMOKE = ['1', 'true', 'yes'].includes(String(__ENV.SMOKE || '').toLowerCase());

/** `__ENV[name]` as a string, else the smoke or the full default. */
export function envStr(name, full, smoke) {
  const v = __ENV[name];
  if (v !== undefined && v !== '') return v;
  return SMOKE && smoke !== undefined ? smoke : full;
}

/** `__ENV[name]` as a number, else the smoke or the full default. */
export function envNum(name, full, smoke) {
  const v = envStr(name, full, smoke);
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

/** A k6 duration ("90s", "5m", "1h2m3s", "1500ms", or bare seconds) in seconds. */
export function durationSecs(d) {
  if (/^\d+(\.\d+)?$/.test(String(d))) return Number(d);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let seen = '';
  let m;
  while ((m = re.exec(d)) !== null) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    seen += m[0];
  }
  if (seen !== String(d)) throw new Error(`not a duration: ${d}`);
  return total;
}

/** A name prefix unique to this run, so fans of different runs never meet. */
export function runPrefix(script) {
  return `${script}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function params(step, name, headers, extra) {
  const p = Object.assign({}, extra || {});
  p.headers = Object.assign({}, headers || {}, p.headers || {});
  p.tags = Object.assign({ name, step }, p.tags || {});
  return p;
}

function bearer(token) {
  return { authorization: `Bearer ${token}` };
}

/** The `error.code` of an error answer, or '' when there is none. */
export function errorCode(res) {
  try {
    const body = res.json();
    return (body && body.error && body.error.code) || '';
  } catch (_) {
    return '';
  }
}

/** Fails the test run at once (setup, teardown) unless `res` has `status`. */
export function mustStatus(res, status, what) {
  if (res.status !== status) {
    fail(`${what}: expected ${status}, got ${res.status} ${String(res.body).slice(0, 300)}`);
  }
  return res;
}

// ---- admin -----------------------------------------------------------------

/**
 * POST /v1/admin/shows and then GET its seat map. Returns
 * `{ show, seats: [{seat_id, label, section, price, status}] }`.
 */
export function createShow(body) {
  if (!ADMIN_KEY) fail('ADMIN_KEY is not set (the gateway\'s ANTEROOM_ADMIN_KEY)');
  const res = http.post(`${BASE_URL}/v1/admin/shows`, JSON.stringify(body),
    params('setup', 'POST /v1/admin/shows', Object.assign(bearer(ADMIN_KEY), JSON_HEADERS)));
  mustStatus(res, 201, 'create show');
  const show = res.json();
  let seats = [];
  if (body.seats) {
    const map = mustStatus(seatMap(show.id, 'setup'), 200, 'seat map');
    seats = map.json();
  }
  return { show, seats };
}

/**
 * Seat ids of a map in layout order, compactly: `{first, count}` when they
 * are consecutive (they are on the embedded and MySQL backends), else
 * `{ids}`. Saves copying a 50,000-element array into every VU.
 */
export function seatRange(seats) {
  const ids = seats.map((s) => s.seat_id);
  const consecutive = ids.every((id, i) => id === ids[0] + i);
  return consecutive ? { first: ids[0], count: ids.length } : { ids, count: ids.length };
}

/** The `i`-th seat id of a `seatRange`, wrapping around. */
export function seatAt(range, i) {
  const k = ((i % range.count) + range.count) % range.count;
  return range.ids ? range.ids[k] : range.first + k;
}

// ---- fans ------------------------------------------------------------------

/** POST /v1/sessions → the user token, or '' on failure. */
export function signIn(username, extra) {
  const res = http.post(`${BASE_URL}/v1/sessions`, JSON.stringify({ username }),
    params('sign_in', 'POST /v1/sessions', JSON_HEADERS, extra));
  const ok = check(res, { 'sign in 201': (r) => r.status === 201 });
  return { res, token: ok ? res.json('token') : '' };
}

/** POST /v1/shows/{id}/queue → the parsed join answer (or null). */
export function join(showId, token, extra) {
  const res = http.post(`${BASE_URL}/v1/shows/${showId}/queue`, null,
    params('join', 'POST /v1/shows/{id}/queue', bearer(token), extra));
  const ok = check(res, { 'join 201/200': (r) => r.status === 201 || r.status === 200 });
  return { res, body: ok ? res.json() : null };
}

/** DELETE /v1/shows/{id}/queue with the ticket. */
export function leave(showId, ticket, extra) {
  return http.del(`${BASE_URL}/v1/shows/${showId}/queue`, null,
    params('leave', 'DELETE /v1/shows/{id}/queue', { 'x-queue-ticket': ticket }, extra));
}

/** GET /v1/shows/{id}/queue/status with the ticket. */
export function status(showId, ticket, extra) {
  return http.get(`${BASE_URL}/v1/shows/${showId}/queue/status`,
    params('status', 'GET /v1/shows/{id}/queue/status', { 'x-queue-ticket': ticket }, extra));
}

/** GET /v1/shows/{id}/seats. */
export function seatMap(showId, step, extra) {
  return http.get(`${BASE_URL}/v1/shows/${showId}/seats`,
    params(step || 'seat_map', 'GET /v1/shows/{id}/seats', {}, extra));
}

/** GET /v1/shows/{id}/layout (fixed for the sale; seats in availability order). */
export function layout(showId, step, extra) {
  return http.get(`${BASE_URL}/v1/shows/${showId}/layout`,
    params(step || 'layout', 'GET /v1/shows/{id}/layout', {}, extra));
}

/** GET /v1/shows/{id}/availability: 2-bit statuses per section, at a version. */
export function availability(showId, step, extra) {
  return http.get(`${BASE_URL}/v1/shows/${showId}/availability`,
    params(step || 'availability', 'GET /v1/shows/{id}/availability', {}, extra));
}

/**
 * The positions, in layout order (the order of `seatRange` over the seat
 * map), of the seats an availability document says are available.
 */
export function availablePositions(doc) {
  const out = [];
  let at = 0;
  for (const section of doc.sections) {
    const bits = new Uint8Array(encoding.b64decode(section.bitmap, 'std'));
    for (let i = 0; i < section.seats; i++, at++) {
      if (((bits[i >> 2] >> (6 - 2 * (i & 3))) & 3) === 0) out.push(at);
    }
  }
  return out;
}

/**
 * Up to `n` distinct positions (layout order) of available seats, picked at
 * random as a fan's page would offer them: random probes first (cheap while
 * most seats are free), a full scan when the show is nearly gone. The scan
 * of a 20,000-seat show per iteration would make the load generator, not
 * the gateway, the cost being measured.
 */
export function randomAvailablePositions(doc, n) {
  const sections = doc.sections.map((s) => ({
    bits: new Uint8Array(encoding.b64decode(s.bitmap, 'std')),
    seats: s.seats,
  }));
  const total = sections.reduce((sum, s) => sum + s.seats, 0);
  const free = (at) => {
    for (const s of sections) {
      if (at < s.seats) return ((s.bits[at >> 2] >> (6 - 2 * (at & 3))) & 3) === 0;
      at -= s.seats;
    }
    return false;
  };
  const picked = new Set();
  for (let probe = 0; probe < 20 * n && picked.size < n && total > 0; probe++) {
    const at = Math.floor(Math.random() * total);
    if (free(at)) picked.add(at);
  }
  if (picked.size < n) {
    const all = availablePositions(doc).filter((at) => !picked.has(at));
    while (picked.size < n && all.length > 0) {
      picked.add(all.splice(Math.floor(Math.random() * all.length), 1)[0]);
    }
  }
  return [...picked];
}

/** The request for a hold, for http.batch (or pass to http.request). */
export function holdRequest(showId, token, access, seatId, extra) {
  return {
    method: 'POST',
    url: `${BASE_URL}/v1/shows/${showId}/reservations`,
    body: JSON.stringify({ seat_id: seatId }),
    params: params('hold', 'POST /v1/shows/{id}/reservations',
      Object.assign(bearer(token), { 'x-access-token': access }, JSON_HEADERS), extra),
  };
}

/** POST /v1/shows/{id}/reservations. */
export function hold(showId, token, access, seatId, extra) {
  const r = holdRequest(showId, token, access, seatId, extra);
  return http.request(r.method, r.url, r.body, r.params);
}

/** DELETE /v1/reservations/{id}. */
export function release(token, reservationId, extra) {
  return http.del(`${BASE_URL}/v1/reservations/${reservationId}`, null,
    params('release', 'DELETE /v1/reservations/{id}', bearer(token), extra));
}

/** POST /v1/points/charge. */
export function charge(token, amount, extra) {
  return http.post(`${BASE_URL}/v1/points/charge`, JSON.stringify({ amount }),
    params('charge', 'POST /v1/points/charge', Object.assign(bearer(token), JSON_HEADERS), extra));
}

/** GET /v1/points. */
export function points(token, extra) {
  return http.get(`${BASE_URL}/v1/points`, params('points', 'GET /v1/points', bearer(token), extra));
}

/** The request for a payment, for http.batch (or pass to http.request). */
export function payRequest(token, access, reservationId, key, extra) {
  return {
    method: 'POST',
    url: `${BASE_URL}/v1/payments`,
    body: JSON.stringify({ reservation_id: reservationId }),
    params: params('pay', 'POST /v1/payments',
      Object.assign(bearer(token), { 'x-access-token': access, 'idempotency-key': key }, JSON_HEADERS),
      extra),
  };
}

/** POST /v1/payments with an Idempotency-Key. */
export function pay(token, access, reservationId, key, extra) {
  const r = payRequest(token, access, reservationId, key, extra);
  return http.request(r.method, r.url, r.body, r.params);
}

/** The WebSocket URL of a join answer's `ws_url`. */
export function wsUrl(joinBody) {
  return `${WS_URL}${joinBody.ws_url}`;
}

/** `http.batch` in chunks of `size`, returning every response in order. */
export function batchAll(requests, size) {
  const out = [];
  for (let i = 0; i < requests.length; i += size) {
    out.push(...http.batch(requests.slice(i, i + size)));
  }
  return out;
}

/** Fisher–Yates shuffle (a copy). */
export function shuffled(xs) {
  const a = xs.slice();
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** The thresholds every script shares. */
export const BASE_THRESHOLDS = {
  http_req_duration: ['p(95)<500'],
  http_req_failed: ['rate<0.01'],
};

/** An `expectedStatuses` callback: marks 409/402 (etc.) as expected answers. */
export const expect = (...statuses) => ({ responseCallback: http.expectedStatuses(...statuses) });
