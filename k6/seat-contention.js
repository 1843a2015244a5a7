// seat-contention: many admitted fans fight over a few seats.
//
// The show's capacity is far above the VU count, so every fan is active on
// joining. All VUs sign in and join, wait at a common start line, then each
// fires holds on every seat at once (http.batch, in its own random order).
// Per seat at most one hold may ever succeed; winners pay for their holds so
// the seats are sold and stay taken for the rest of the run. Later
// iterations (new fans) keep trying TRIES random seats each, so the
// refusal path stays under load until the last seat sells; after that the
// show is sold out and new fans are refused at the join (409 sold_out,
// counted in joins_refused_sold_out).
//
// Checks:
//   seat_wins (201s) == SEATS in total and <= 1 per seat (tag seat:s<n>),
//     so exactly one success per seat;
//   every refusal is 409 seat_taken or hold_limit (nothing else);
//   no fan ever has more than MAX_HOLDS successful holds (the hold limit
//     holds under concurrent requests);
//   teardown: the seat map shows every seat held or sold.
//
// Env: VUS (200), DURATION (30s), SEATS (20), CAPACITY (100000),
// MAX_HOLDS (4, the gateway's ANTEROOM_MAX_HOLDS), START_DELAY_MS (5000:
// how long after setup the VUs start firing), TRIES (4 seats per later
// iteration), PAUSE (1 s between a VU's iterations). SMOKE=1: 30 VUs for 5 s.

import exec from 'k6/execution';
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  BASE_THRESHOLDS, batchAll, charge, createShow, envNum, envStr, errorCode, expect, holdRequest,
  join, leave, payRequest, runPrefix, shuffled, signIn, availability,
} from './lib/anteroom.js';

const VUS = envNum('VUS', 200, 30);
const DURATION = envStr('DURATION', '30s', '5s');
const SEATS = envNum('SEATS', 20, 20);
const CAPACITY = envNum('CAPACITY', 100000, 10000);
const MAX_HOLDS = envNum('MAX_HOLDS', 4, 4);
const START_DELAY_MS = envNum('START_DELAY_MS', 5000, 1500);
const TRIES = envNum('TRIES', 4, 4);
const PAUSE = envNum('PAUSE', 1, 0.2);
const PRICE = 10;

if (SEATS < 1 || SEATS > 1000) throw new Error('SEATS must be 1..1000');

// One threshold per seat: a seat's wins are tagged seat:s<n> (its position
// in the layout, known before setup runs; seat ids are not).
const perSeat = {};
for (let i = 1; i <= SEATS; i++) perSeat[`seat_wins{seat:s${i}}`] = ['count<=1'];

export const options = {
  scenarios: {
    contention: { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '30s' },
  },
  setupTimeout: '60s',
  thresholds: Object.assign({}, BASE_THRESHOLDS, perSeat, {
    seat_wins: [`count==${SEATS}`],
    hold_unexpected_answers: ['count==0'],
    hold_limit_exceeded: ['count==0'],
    fans_not_active_on_join: ['count==0'],
    payments_failed: ['count==0'],
    teardown_seats_not_taken: ['count==0'],
  }),
};

const seatWins = new Counter('seat_wins');
const seatTaken = new Counter('hold_seat_taken');
const holdLimit = new Counter('hold_limit_refusals');
const unexpectedAnswers = new Counter('hold_unexpected_answers');
const holdLimitExceeded = new Counter('hold_limit_exceeded');
const notActive = new Counter('fans_not_active_on_join');
const paymentsOk = new Counter('payments_ok');
const soldOutJoins = new Counter('joins_refused_sold_out');
const paymentsFailed = new Counter('payments_failed');
const seatsNotTaken = new Counter('teardown_seats_not_taken');

export function setup() {
  const { show, seats } = createShow({
    title: `k6 seat-contention ${new Date().toISOString()}`,
    capacity: CAPACITY,
    session_ttl_seconds: 3600,
    seats: [{ name: 'Pit', rows: 1, seats_per_row: SEATS, price: PRICE }],
  });
  if (seats.length !== SEATS) fail(`expected ${SEATS} seats, the map has ${seats.length}`);
  // Materialise the counters checked by thresholds, so "no sample" can
  // never pass for "zero".
  for (const c of [unexpectedAnswers, holdLimitExceeded, notActive, paymentsFailed, seatsNotTaken]) c.add(0);
  return {
    showId: show.id,
    seatIds: seats.map((s) => s.seat_id),
    startAt: Date.now() + START_DELAY_MS,
    prefix: runPrefix('contention'),
  };
}

export default function (data) {
  const username = `${data.prefix}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const { token } = signIn(username);
  if (!token) return;
  // Once every seat is sold the show is sold out: later fans are refused
  // (409 sold_out), which is the answer, not a failure.
  const { res: joinRes, body: joined } = join(data.showId, token, expect(200, 201, 409));
  if (joinRes.status === 409 && errorCode(joinRes) === 'sold_out') {
    soldOutJoins.add(1);
    return;
  }
  if (!joined) return;
  if (joined.state !== 'active') {
    notActive.add(1);
    leave(data.showId, joined.ticket, expect(204, 404));
    return;
  }
  const access = joined.access_token;

  // The start line: the first round of every VU fires together.
  const wait = data.startAt - Date.now();
  if (wait > 0) sleep(wait / 1000);

  // The first round tries every seat at once; later ones TRIES random seats.
  let order = shuffled(data.seatIds.map((id, i) => ({ id, tag: `s${i + 1}` })));
  if (exec.vu.iterationInScenario > 0) order = order.slice(0, TRIES);
  const responses = http.batch(order.map((s) =>
    holdRequest(data.showId, token, access, s.id, Object.assign({ tags: { seat: s.tag } }, expect(201, 409)))));

  const won = [];
  responses.forEach((res, i) => {
    if (res.status === 201) {
      seatWins.add(1, { seat: order[i].tag });
      won.push(res.json());
      return;
    }
    const code = res.status === 409 ? errorCode(res) : '';
    if (code === 'seat_taken') seatTaken.add(1);
    else if (code === 'hold_limit') holdLimit.add(1);
    else {
      unexpectedAnswers.add(1, { status: String(res.status) });
      console.warn(`hold on ${order[i].tag}: ${res.status} ${String(res.body).slice(0, 200)}`);
    }
  });
  if (won.length > MAX_HOLDS) {
    holdLimitExceeded.add(won.length - MAX_HOLDS);
    console.warn(`${username} got ${won.length} holds, the limit is ${MAX_HOLDS}`);
  }

  if (won.length === 0) {
    check(leave(data.showId, joined.ticket), { 'leave 204': (r) => r.status === 204 });
  } else {
    // Winners pay, so their seats are sold and never come back (a hold
    // expiring mid-run would let a second fan win the same seat).
    const total = won.reduce((sum, r) => sum + r.price, 0);
    check(charge(token, total), { 'charge 200': (r) => r.status === 200 });
    const paid = batchAll(won.map((r) =>
      payRequest(token, access, r.reservation_id, `contention-${r.reservation_id}`)), 4);
    paid.forEach((res) => {
      if (check(res, { 'pay 201': (r) => r.status === 201 })) paymentsOk.add(1);
      else {
        paymentsFailed.add(1);
        console.warn(`pay: ${res.status} ${String(res.body).slice(0, 200)}`);
      }
    });
  }
  sleep(PAUSE);
}

export function teardown(data) {
  const res = availability(data.showId, 'teardown');
  if (!check(res, { 'teardown availability 200': (r) => r.status === 200 })) {
    seatsNotTaken.add(data.seatIds.length);
    return;
  }
  const doc = res.json();
  const seats = doc.sections.reduce((n, s) => n + s.seats, 0);
  const notTaken = doc.sections.reduce((n, s) => n + s.available, 0);
  seatsNotTaken.add(notTaken);
  check(doc, {
    'teardown: every seat held or sold': () => notTaken === 0,
    'teardown: availability has every seat': () => seats === data.seatIds.length,
  });
  console.log(`teardown: ${seats - notTaken} of ${seats} seats held or sold (availability version ${doc.version})`);
}
