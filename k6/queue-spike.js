// queue-spike: a sale opening. VUs ramp to 1,000 fans who sign in, join one
// show's queue, hold its WebSocket and wait for `active`. An admitted fan
// then either pays for a seat (hold → charge → pay) or leaves, which frees
// the slot for the next fan, so admission keeps moving for the whole run.
//
// Checks, besides the shared HTTP thresholds:
//   activations > 0, and nearly every fan is admitted before ACTIVE_TIMEOUT;
//   the first frame on a socket is the current state (`rank` or `active`);
//   a waiting fan's rank never goes up (everyone who joined later is behind);
//   after paying / leaving the socket gets `closed` with reason
//   `completed` / `left` (a freeing event is never lost), and then the
//   server closes the connection;
//   no other frame arrives (no rank after active, no second active, no
//   `closed`/`expired` out of turn).
//
// Env: VUS (1000), RAMP (30s), DURATION (1m, the plateau), RAMP_DOWN (10s),
// CAPACITY (100), SESSION_TTL (120), SEATS (20000), PAY_RATIO (0.5),
// THINK_MS (1000: an admitted fan waits 0..THINK_MS before acting),
// ACTIVE_TIMEOUT (60 s), EXIT_TIMEOUT (10 s). SMOKE=1 shrinks all of them.

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import {
  BASE_THRESHOLDS, createShow, envNum, envStr, errorCode, expect, charge, hold, join, leave,
  pay, runPrefix, seatAt, seatRange, signIn, wsUrl,
} from './lib/anteroom.js';

const VUS = envNum('VUS', 1000, 20);
const RAMP = envStr('RAMP', '30s', '3s');
const DURATION = envStr('DURATION', '1m', '6s');
const RAMP_DOWN = envStr('RAMP_DOWN', '10s', '1s');
const CAPACITY = envNum('CAPACITY', 100, 5);
const SESSION_TTL = envNum('SESSION_TTL', 120, 60);
const SEATS = envNum('SEATS', 20000, 500);
const PAY_RATIO = envNum('PAY_RATIO', 0.5, 0.5);
const THINK_MS = envNum('THINK_MS', 1000, 200);
const ACTIVE_TIMEOUT = envNum('ACTIVE_TIMEOUT', 60, 20);
const EXIT_TIMEOUT = envNum('EXIT_TIMEOUT', 10, 10);
const PRICE = 100;

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: RAMP, target: VUS },
        { duration: DURATION, target: VUS },
        { duration: RAMP_DOWN, target: 0 },
      ],
      // A fan still waiting when its VU is told to stop gets to finish: it is
      // admitted or gives up after ACTIVE_TIMEOUT.
      gracefulRampDown: `${ACTIVE_TIMEOUT + EXIT_TIMEOUT + 5}s`,
      gracefulStop: `${ACTIVE_TIMEOUT + EXIT_TIMEOUT + 5}s`,
    },
  },
  setupTimeout: '120s',
  thresholds: Object.assign({}, BASE_THRESHOLDS, {
    activations: ['count>0'],
    fans_admitted: ['rate>0.99'],
    ws_first_frame_is_state: ['rate==1'],
    rank_went_up: ['count==0'],
    exit_closed_pushed: ['rate==1'],
    ws_errors: ['count==0'],
    ws_unexpected_frames: ['count==0'],
    ws_server_close_missing: ['count==0'],
  }),
};

const joinToActive = new Trend('queue_join_to_active', true);
const activations = new Counter('activations');
const fansAdmitted = new Rate('fans_admitted');
const admittedOnJoin = new Rate('admitted_on_join');
const firstFrameIsState = new Rate('ws_first_frame_is_state');
const rankWentUp = new Counter('rank_went_up');
const rankFrames = new Counter('rank_frames');
const exitClosedPushed = new Rate('exit_closed_pushed');
const wsErrors = new Counter('ws_errors');
const unexpectedFrames = new Counter('ws_unexpected_frames');
const paid = new Counter('fans_paid');
const left = new Counter('fans_left');
const payFailed = new Counter('pay_failed');
const serverCloseMissing = new Counter('ws_server_close_missing');

export function setup() {
  const rows = Math.ceil(SEATS / 100);
  const { show, seats } = createShow({
    title: `k6 queue-spike ${new Date().toISOString()}`,
    capacity: CAPACITY,
    session_ttl_seconds: SESSION_TTL,
    abandon_grace_seconds: 60,
    seats: [{ name: 'Floor', rows, seats_per_row: Math.min(SEATS, 100), price: PRICE }],
  });
  return { showId: show.id, seats: seatRange(seats), prefix: runPrefix('spike') };
}

/** Holds a seat (trying the next one on 409 seat_taken), charges and pays. */
function buy(data, token, access) {
  const base = exec.scenario.iterationInTest;
  let reservation = null;
  for (let attempt = 0; attempt < 5 && !reservation; attempt++) {
    const seat = seatAt(data.seats, base + attempt * 7919);
    const res = hold(data.showId, token, access, seat, expect(201, 409));
    if (res.status === 201) reservation = res.json();
    else if (errorCode(res) !== 'seat_taken') break;
  }
  if (!reservation) return false;
  const c = charge(token, reservation.price);
  if (!check(c, { 'charge 200': (r) => r.status === 200 })) return false;
  const p = pay(token, access, reservation.reservation_id, `spike-${base}`);
  return check(p, {
    'pay 201 completed': (r) => r.status === 201 && r.json('status') === 'completed',
  });
}

export default function (data) {
  const username = `${data.prefix}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const { token } = signIn(username);
  if (!token) return;
  const joinedAt = Date.now();
  const { body: joined } = join(data.showId, token);
  if (!joined) return;
  admittedOnJoin.add(joined.state === 'active');

  const ws = new WebSocket(wsUrl(joined), null, { tags: { name: 'WS /v1/shows/{id}/queue/ws' } });
  let phase = 'waiting'; // waiting → acting → exiting → done
  let expectedReason = '';
  let lastRank = Infinity;
  let frames = 0;
  let exitTimer = null;

  let closeTimer = null;
  const clearTimers = () => {
    clearTimeout(giveUp);
    if (exitTimer !== null) clearTimeout(exitTimer);
    if (closeTimer !== null) clearTimeout(closeTimer);
  };
  // The client ends the connection (gave up waiting).
  const finish = () => {
    phase = 'done';
    clearTimers();
    ws.close();
  };
  // After a terminal frame the server closes the connection; closing from
  // this side as well would race its close frame.
  const awaitServerClose = () => {
    phase = 'closing';
    clearTimers();
    closeTimer = setTimeout(() => {
      serverCloseMissing.add(1);
      console.warn(`${username}: the server did not close the socket after a terminal frame`);
      finish();
    }, 5000);
  };

  const giveUp = setTimeout(() => {
    if (phase !== 'waiting') return;
    fansAdmitted.add(false);
    leave(data.showId, joined.ticket, expect(204, 404));
    finish();
  }, ACTIVE_TIMEOUT * 1000);

  const exit = (reason) => {
    phase = 'exiting';
    expectedReason = reason;
    exitTimer = setTimeout(() => {
      if (phase !== 'exiting') return;
      exitClosedPushed.add(false);
      console.warn(`${username}: no closed(${reason}) within ${EXIT_TIMEOUT}s`);
      finish();
    }, EXIT_TIMEOUT * 1000);
  };

  const act = (access) => {
    if (phase !== 'acting') return;
    if (Math.random() < PAY_RATIO) {
      if (buy(data, token, access)) {
        paid.add(1);
        exit('completed');
        return;
      }
      payFailed.add(1);
    }
    const res = leave(data.showId, joined.ticket);
    if (check(res, { 'leave 204': (r) => r.status === 204 })) {
      left.add(1);
      exit('left');
    } else {
      finish();
    }
  };

  ws.onmessage = (e) => {
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch (_) {
      unexpectedFrames.add(1);
      return;
    }
    frames += 1;
    if (frames === 1) firstFrameIsState.add(msg.type === 'rank' || msg.type === 'active');
    switch (msg.type) {
      case 'rank':
        rankFrames.add(1);
        if (phase !== 'waiting') {
          unexpectedFrames.add(1, { type: 'rank_after_active' });
        } else if (msg.rank > lastRank) {
          rankWentUp.add(1);
          console.warn(`${username}: rank went up ${lastRank} → ${msg.rank}`);
        }
        lastRank = msg.rank;
        break;
      case 'active':
        if (phase !== 'waiting') {
          unexpectedFrames.add(1, { type: 'second_active' });
          break;
        }
        phase = 'acting';
        clearTimeout(giveUp);
        joinToActive.add(Date.now() - joinedAt);
        activations.add(1);
        fansAdmitted.add(true);
        setTimeout(() => act(msg.access_token), Math.random() * THINK_MS);
        break;
      case 'closed':
        if (phase === 'exiting') {
          const ok = msg.reason === expectedReason;
          exitClosedPushed.add(ok);
          if (!ok) console.warn(`${username}: closed(${msg.reason}), expected ${expectedReason}`);
        } else {
          unexpectedFrames.add(1, { type: `closed_${msg.reason}_while_${phase}` });
          console.warn(`${username}: closed(${msg.reason}) while ${phase}`);
          if (phase === 'waiting') fansAdmitted.add(false);
        }
        awaitServerClose();
        break;
      case 'expiring':
        break;
      case 'seats':
        // Seat availability deltas, pushed to admitted fans.
        if (phase === 'waiting') unexpectedFrames.add(1, { type: 'seats_while_waiting' });
        break;
      default:
        unexpectedFrames.add(1, { type: String(msg.type) });
        console.warn(`${username}: unexpected frame ${e.data}`);
        if (msg.type === 'expired') awaitServerClose();
    }
  };
  ws.onerror = (e) => {
    wsErrors.add(1);
    console.warn(`${username}: websocket error ${e.error || ''}`);
  };
  ws.onclose = () => {
    if (phase === 'exiting') {
      exitClosedPushed.add(false);
      console.warn(`${username}: socket closed before closed(${expectedReason})`);
    } else if (phase === 'waiting') {
      fansAdmitted.add(false);
      console.warn(`${username}: socket closed while waiting`);
    }
    phase = 'done';
    clearTimers();
  };
}
