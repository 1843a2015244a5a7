// The client's REST paths without a browser or a gateway: what a join
// answer or a polled status turns into (the same events the push sends), and
// a refused join. `fetch` is replaced by a scripted gateway.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { QueueClient } from '../anteroom.js';

const BASE = 'http://gateway.test/';
const realFetch = globalThis.fetch;

afterEach(() => {
  globalThis.fetch = realFetch;
});

function memoryStorage() {
  const items = new Map();
  return {
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => items.set(k, String(v)),
    removeItem: (k) => items.delete(k),
  };
}

/** A client that records every event it emits, in order. */
function recordingClient(storage = memoryStorage()) {
  const client = new QueueClient(7, { token: 'fan-token', baseUrl: BASE, storage });
  const events = [];
  for (const type of ['prequeue', 'rank', 'paused', 'notice', 'active', 'expired', 'closed', 'error', 'transport']) {
    client.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  }
  return { client, events, storage };
}

/** A gateway that answers each request with the next scripted answer. */
function scriptedGateway(answers) {
  const requests = [];
  globalThis.fetch = async (url, init) => {
    requests.push({ url: String(url), method: init.method, headers: init.headers });
    const next = answers.shift();
    assert.ok(next, `an unexpected request: ${init.method} ${url}`);
    return new Response(JSON.stringify(next.body), { status: next.status ?? 200 });
  };
  return requests;
}

/** Resolves once `events` holds `count` events, or fails after `ms`. */
async function eventually(events, count, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (events.length < count) {
    assert.ok(Date.now() < deadline, `only ${JSON.stringify(events)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('each status answer becomes the message the push would send', () => {
  const { client, events } = recordingClient();
  client.handleState({ state: 'prequeued', starts_at: '2031-05-01T10:00:00Z', poll_after_ms: 5000 });
  client.handleState({ state: 'waiting', rank: 3, ahead: 2, eta_seconds: 40 });
  client.handleState({ state: 'waiting', rank: 3, ahead: 2, paused: true });
  client.handleState({ state: 'waiting', rank: 2, ahead: 1 });
  assert.deepEqual(events, [
    { type: 'prequeue', starts_at: '2031-05-01T10:00:00Z' },
    { type: 'rank', rank: 3, ahead: 2, eta_seconds: 40 },
    { type: 'paused', rank: 3, ahead: 2 },
    { type: 'rank', rank: 2, ahead: 1, eta_seconds: null },
  ]);
  client.stop();
});

for (const reason of ['sold_out', 'show_closed', 'removed']) {
  test(`a closed status (${reason}) ends the place and forgets the ticket`, () => {
    const storage = memoryStorage();
    storage.setItem('anteroom.ticket.7', 't-1');
    const { client, events } = recordingClient(storage);
    client.handleState({ state: 'closed', reason });
    client.handleState({ state: 'waiting', rank: 1, ahead: 0 });
    assert.deepEqual(events, [{ type: 'closed', reason }]);
    assert.equal(client.ended, true);
    assert.equal(storage.getItem('anteroom.ticket.7'), null);
  });
}

test('polling follows a pre-queued fan through the opening, a pause and a sell-out', async () => {
  const requests = scriptedGateway([
    { status: 201, body: { ticket: 't-1', state: 'prequeued', starts_at: '2031-05-01T10:00:00Z' } },
    { body: { state: 'prequeued', starts_at: '2031-05-01T10:00:00Z', poll_after_ms: 1 } },
    { body: { state: 'waiting', rank: 5, ahead: 4, eta_seconds: 90, poll_after_ms: 1 } },
    { body: { state: 'waiting', rank: 4, ahead: 3, paused: true, poll_after_ms: 1 } },
    { body: { state: 'waiting', rank: 4, ahead: 3, eta_seconds: 60, poll_after_ms: 1 } },
    { body: { state: 'closed', reason: 'sold_out', poll_after_ms: 1 } },
  ]);
  const { client, events, storage } = recordingClient();
  client.transport = 'poll';
  await client.start();
  await eventually(events, 7);
  assert.deepEqual(events.filter((e) => e.type !== 'transport'), [
    { type: 'prequeue', starts_at: '2031-05-01T10:00:00Z' },
    { type: 'prequeue', starts_at: '2031-05-01T10:00:00Z' },
    { type: 'rank', rank: 5, ahead: 4, eta_seconds: 90 },
    { type: 'paused', rank: 4, ahead: 3 },
    { type: 'rank', rank: 4, ahead: 3, eta_seconds: 60 },
    { type: 'closed', reason: 'sold_out' },
  ]);
  assert.equal(requests.length, 6, 'no poll after the place ended');
  assert.ok(requests.slice(1).every((r) => r.headers['x-queue-ticket'] === 't-1'));
  assert.equal(storage.getItem('anteroom.ticket.7'), null);
});

test('a polling fan in the pre-queue comes back just after the opening, not a whole interval later', async () => {
  const startsAt = new Date(Date.now() + 300).toISOString();
  scriptedGateway([
    { status: 201, body: { ticket: 't-1', state: 'prequeued', starts_at: startsAt } },
    { body: { state: 'prequeued', starts_at: startsAt, poll_after_ms: 60_000 } },
    { body: { state: 'waiting', rank: 1, ahead: 0, poll_after_ms: 60_000 } },
  ]);
  const { client, events } = recordingClient();
  client.transport = 'poll';
  const started = Date.now();
  await client.start();
  await eventually(events, 4, 3_000);
  assert.deepEqual(events.filter((e) => e.type !== 'transport').map((e) => e.type), ['prequeue', 'prequeue', 'rank']);
  assert.ok(Date.now() - started >= 250, 'not before the opening');
  client.stop();
});

for (const code of ['sold_out', 'show_closed', 'not_open_yet']) {
  test(`a join refused with 409 ${code} is an error event and keeps no ticket`, async () => {
    scriptedGateway([{ status: 409, body: { error: { code, message: 'refused' } } }]);
    const { client, events, storage } = recordingClient();
    await client.start();
    assert.deepEqual(events, [{ type: 'error', code, message: 'refused', status: 409 }]);
    assert.equal(client.ticket, null);
    assert.equal(storage.getItem('anteroom.ticket.7'), null);
    client.stop();
  });
}

test('the operator notice in status answers is raised once per change, cleared with an empty text', () => {
  const { client, events } = recordingClient();
  client.handleState({ state: 'waiting', rank: 3, ahead: 2 });
  client.handleState({ state: 'waiting', rank: 3, ahead: 2, notice: 'Doors at 7' });
  client.handleState({ state: 'waiting', rank: 2, ahead: 1, notice: 'Doors at 7' });
  client.handleMessage({ type: 'notice', code: 'operator', text: 'Doors at 8' });
  client.handleState({ state: 'waiting', rank: 2, ahead: 1, notice: 'Doors at 8' });
  client.handleState({ state: 'waiting', rank: 1, ahead: 0 });
  assert.deepEqual(events.filter((e) => e.type === 'notice'), [
    { type: 'notice', code: 'operator', text: 'Doors at 7' },
    { type: 'notice', code: 'operator', text: 'Doors at 8' },
    { type: 'notice', code: 'operator', text: '' },
  ]);
  client.stop();
});

/** A WebSocket that never opens: the browser's view of a refused upgrade (401/404 before it). */
class RefusedSocket {
  constructor() {
    setTimeout(() => this.onclose?.({ code: 1006 }), 1);
  }
  close() {}
}

for (const [status, code] of [[401, 'invalid_ticket'], [401, 'ticket_expired'], [404, 'show_not_found']]) {
  test(`a socket that fails asks the status first: ${status} ${code} ends the loop at once`, async () => {
    globalThis.WebSocket = RefusedSocket;
    const storage = memoryStorage();
    storage.setItem('anteroom.ticket.7', 't-old');
    const requests = scriptedGateway([{ status, body: { error: { code, message: 'no' } } }]);
    const { client, events } = recordingClient(storage);
    const states = [];
    client.addEventListener('connection', (e) => states.push(e.detail.state));
    await client.start();
    await eventually(events, 1);
    assert.deepEqual(events, [{ type: 'error', code, message: 'no', status }]);
    assert.deepEqual(states, ['stopped'], 'never "reconnecting"');
    assert.equal(requests.length, 1);
    assert.match(requests[0].url, /\/v1\/shows\/7\/queue\/status$/);
    assert.equal(storage.getItem('anteroom.ticket.7'), null);
    // Longer than the first retry's wait (at most BACKOFF_START_MS).
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(requests.length, 1, 'no retry after the place was lost');
    delete globalThis.WebSocket;
  });
}

test('a socket that fails while the place is there: its rank, then a retry with a countdown', async () => {
  globalThis.WebSocket = RefusedSocket;
  const storage = memoryStorage();
  storage.setItem('anteroom.ticket.7', 't-1');
  scriptedGateway([{ body: { state: 'waiting', rank: 4, ahead: 3, poll_after_ms: 1000 } }]);
  const { client, events } = recordingClient(storage);
  const connection = [];
  client.addEventListener('connection', (e) => connection.push(e.detail));
  client.worked.ws = true; // it had worked: retried, not abandoned for SSE
  const started = Date.now();
  await client.start();
  await eventually(events, 1);
  await eventually(connection, 1);
  assert.deepEqual(events[0], { type: 'rank', rank: 4, ahead: 3, eta_seconds: null });
  assert.equal(connection[0].state, 'reconnecting');
  // The retry is due at most BACKOFF_START_MS after the failure.
  const due = connection[0].retry_at - started;
  assert.ok(due > 0 && due <= 500 + (Date.now() - started), `${due} ms`);
  client.stop();
  assert.deepEqual(connection.at(-1), { state: 'stopped' });
  delete globalThis.WebSocket;
});
