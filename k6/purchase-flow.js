// purchase-flow: the whole journey of a fan, end to end, timed per step.
//
//   sign in → join → WebSocket until `active` → GET availability (the
//   layout is read once, in setup) → hold a seat
//   → charge points → pay (Idempotency-Key) → `closed: completed` pushed
//
// The show admits CAPACITY fans at a time and VUS fans are buying, so most
// wait in line first. Each step's time is a Trend (step_*); flow_ok is the
// share of journeys that went through completely. Along the way it checks
// what the protocol promises about payments: replaying the payment with
// the same key answers the same receipt and charges once (the balance is
// 0 after paying exactly the price), and the payer's socket gets
// `closed: completed` (the slot is freed).
//
// Env: VUS (50), DURATION (1m), CAPACITY (20), SEATS (2000), THINK (1 s
// between steps, ±50%), ACTIVE_TIMEOUT (60 s), EXIT_TIMEOUT (10 s).
// SMOKE=1: 8 VUs, capacity 3, 8 s.

import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import {
  BASE_THRESHOLDS, charge, createShow, envNum, envStr, errorCode, expect, hold, join, leave, pay,
  points, runPrefix, signIn, wsUrl, availability, randomAvailablePositions, seatAt, seatRange,
} from './lib/anteroom.js';

const VUS = envNum('VUS', 50, 8);
const DURATION = envStr('DURATION', '1m', '8s');
const CAPACITY = envNum('CAPACITY', 20, 3);
const SEATS = envNum('SEATS', 2000, 300);
const THINK = envNum('THINK', 1, 0.1);
const ACTIVE_TIMEOUT = envNum('ACTIVE_TIMEOUT', 60, 20);
const EXIT_TIMEOUT = envNum('EXIT_TIMEOUT', 10, 10);

export const options = {
  scenarios: {
    purchase: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: `${ACTIVE_TIMEOUT + EXIT_TIMEOUT + 10}s`,
    },
  },
  setupTimeout: '60s',
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    flow_ok: ['rate>0.99'],
    flows_completed: ['count>0'],
    'http_req_duration{step:hold}': ['p(95)<500'],
    'http_req_duration{step:pay}': ['p(95)<500'],
    payment_replay_same_receipt: ['rate==1'],
    balance_charged_once: ['rate==1'],
    closed_completed_pushed: ['rate==1'],
    ws_errors: ['count==0'],
    ws_server_close_missing: ['count==0'],
  }),
};

const stepSignIn = new Trend('step_sign_in', true);
const stepJoin = new Trend('step_join', true);
const stepWaitActive = new Trend('step_wait_active', true);
const stepSeatMap = new Trend('step_seat_map', true);
const stepHold = new Trend('step_hold', true);
const stepCharge = new Trend('step_charge', true);
const stepPay = new Trend('step_pay', true);
const payToClosed = new Trend('step_pay_to_closed_push', true);
const flowTotal = new Trend('flow_total', true);
const flowOk = new Rate('flow_ok');
const flowsCompleted = new Counter('flows_completed');
const holdConflicts = new Counter('hold_conflicts');
const replaySame = new Rate('payment_replay_same_receipt');
const chargedOnce = new Rate('balance_charged_once');
const closedPushed = new Rate('closed_completed_pushed');
const wsErrors = new Counter('ws_errors');
const serverCloseMissing = new Counter('ws_server_close_missing');

export function setup() {
  const half = Math.ceil(SEATS / 2);
  const perRow = Math.min(half, 50);
  const rows = Math.ceil(half / perRow);
  const { show, seats } = createShow({
    title: `k6 purchase-flow ${new Date().toISOString()}`,
    capacity: CAPACITY,
    session_ttl_seconds: 300,
    seats: [
      { name: 'Floor', rows, seats_per_row: perRow, price: 120 },
      { name: 'Balcony', rows, seats_per_row: perRow, price: 60 },
    ],
  });
  return { showId: show.id, seatCount: seats.length, seats: seatRange(seats), prefix: runPrefix('purchase') };
}

const think = () => sleep(THINK * (0.5 + Math.random()));

/** Availability → hold → charge → pay. Returns the payment or null. */
function buy(data, token, access) {
  think();
  // The layout came with setup (seat ids in layout order); a fan reads
  // only the availability, a few KB even for an arena.
  const mapRes = availability(data.showId, 'seat_map');
  stepSeatMap.add(mapRes.timings.duration);
  if (!check(mapRes, { 'availability 200': (r) => r.status === 200 })) return null;
  // At most the 5 attempts below, picked at random among the available.
  const available = randomAvailablePositions(mapRes.json(), 5).map((at) => ({ seat_id: seatAt(data.seats, at) }));
  if (!check(available, { 'a seat is available': (a) => a.length > 0 })) return null;

  think();
  let reservation = null;
  for (let attempt = 0; attempt < 5 && !reservation && available.length > 0; attempt++) {
    const [seat] = available.splice(Math.floor(Math.random() * available.length), 1);
    const res = hold(data.showId, token, access, seat.seat_id, expect(201, 409));
    stepHold.add(res.timings.duration);
    if (res.status === 201) reservation = res.json();
    else if (errorCode(res) === 'seat_taken') holdConflicts.add(1);
    else break;
  }
  if (!check(reservation, { 'hold 201': (r) => r !== null })) return null;

  think();
  const c = charge(token, reservation.price);
  stepCharge.add(c.timings.duration);
  if (!check(c, { 'charge 200': (r) => r.status === 200 && r.json('balance') === reservation.price })) return null;

  const key = `purchase-${exec.scenario.iterationInTest}-${reservation.reservation_id}`;
  const p = pay(token, access, reservation.reservation_id, key);
  stepPay.add(p.timings.duration);
  if (!check(p, {
    'pay 201 completed': (r) => r.status === 201 && r.json('status') === 'completed',
    'pay amount is the price': (r) => r.status === 201 && r.json('amount') === reservation.price,
  })) return null;

  // A retry with the same key answers the first receipt and charges nothing.
  const again = pay(token, access, reservation.reservation_id, key, { tags: { step: 'pay_replay' } });
  replaySame.add(again.status === 201 && again.body === p.body);
  const bal = points(token);
  chargedOnce.add(bal.status === 200 && bal.json('balance') === 0);
  return p.json();
}

export default function (data) {
  const started = Date.now();
  const username = `${data.prefix}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const s = signIn(username);
  stepSignIn.add(s.res.timings.duration);
  if (!s.token) {
    flowOk.add(false);
    return;
  }
  const token = s.token;
  const j = join(data.showId, token);
  stepJoin.add(j.res.timings.duration);
  if (!j.body) {
    flowOk.add(false);
    return;
  }
  const joined = j.body;
  const joinedAt = Date.now();

  const ws = new WebSocket(wsUrl(joined), null, { tags: { name: 'WS /v1/shows/{id}/queue/ws' } });
  let phase = 'waiting'; // waiting → buying → paid → done
  let paidAt = 0;
  let exitTimer = null;

  let closeTimer = null;
  // The journey is over. After a terminal frame (`closed`, `expired`) the
  // server closes the socket itself (closing from here too would race its
  // close frame); otherwise this side closes it.
  const finish = (ok, serverCloses) => {
    if (phase === 'done') return;
    phase = 'done';
    flowOk.add(ok);
    clearTimeout(giveUp);
    if (exitTimer !== null) clearTimeout(exitTimer);
    if (!serverCloses) {
      ws.close();
      return;
    }
    closeTimer = setTimeout(() => {
      console.warn(`${username}: the server did not close the socket after a terminal frame`);
      serverCloseMissing.add(1);
      ws.close();
    }, 5000);
  };
  const giveUp = setTimeout(() => {
    console.warn(`${username}: not admitted within ${ACTIVE_TIMEOUT}s`);
    leave(data.showId, joined.ticket, expect(204, 404));
    finish(false);
  }, ACTIVE_TIMEOUT * 1000);

  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === 'active' && phase === 'waiting') {
      phase = 'buying';
      clearTimeout(giveUp);
      stepWaitActive.add(Date.now() - joinedAt);
      const payment = buy(data, token, msg.access_token);
      if (!payment) {
        leave(data.showId, joined.ticket, expect(204, 404));
        finish(false);
        return;
      }
      phase = 'paid';
      paidAt = Date.now();
      flowTotal.add(paidAt - started);
      exitTimer = setTimeout(() => {
        closedPushed.add(false);
        console.warn(`${username}: no closed(completed) within ${EXIT_TIMEOUT}s of paying`);
        finish(false);
      }, EXIT_TIMEOUT * 1000);
    } else if (msg.type === 'closed') {
      if (phase === 'paid') {
        const ok = msg.reason === 'completed';
        closedPushed.add(ok);
        if (ok) {
          payToClosed.add(Date.now() - paidAt);
          flowsCompleted.add(1);
        } else {
          console.warn(`${username}: closed(${msg.reason}) after paying`);
        }
        finish(ok, true);
      } else {
        console.warn(`${username}: closed(${msg.reason}) while ${phase}`);
        finish(false, true);
      }
    } else if (msg.type === 'expired') {
      console.warn(`${username}: expired while ${phase}`);
      finish(false, true);
    }
  };
  ws.onerror = (e) => {
    wsErrors.add(1);
    console.warn(`${username}: websocket error ${e.error || ''}`);
  };
  ws.onclose = () => {
    if (closeTimer !== null) clearTimeout(closeTimer);
    if (phase !== 'done') {
      console.warn(`${username}: socket closed while ${phase}`);
      finish(false, true);
      if (closeTimer !== null) clearTimeout(closeTimer);
    }
  };
}
