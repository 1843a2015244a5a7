// Browser tests of the waiting room page: Debian's Chromium driven by
// playwright-core, against the real gateway binary (target/debug/anteroom,
// built by scripts/test.sh). Run with `npm test` in web/.
//
// 1. The whole journey with capacity 1, admission by push.
// 2. WebSockets blocked: the page falls back to SSE and is still admitted.
// 3. The gateway restarts while a fan waits (Redis + MySQL keep the queue):
//    the page reconnects by itself and shows the same rank.
// 4. The gateway restarts with a new secret while a fan waits: the page
//    stops reconnecting and offers to join again within 10 s (never stuck).
// 5. A show that asks for proof of work: the page solves the challenge by
//    itself and is admitted, with Web Workers or without.
// The journey also saves the English screenshots in docs/screenshots/ and
// scans every view it passes with axe-core.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  Gateway, assertAccessible, blockWebSockets, chromiumForFile, screenshots, signInAndJoin, visible,
} from './gateway.mjs';

const { newPage } = chromiumForFile();

/** Holds the first free seat, adds the points it needs, pays. */
async function buyFirstFreeSeat(page) {
  await page.locator('#seat-map button.seat[data-status="available"]').first().click();
  await visible(page, 'hold');
  await page.locator('#charge').click();
  await page.locator('#pay:not([disabled])').click();
  await visible(page, 'done-view');
  assert.match(await page.locator('#receipt').textContent(), /^1 seat is yours/);
}

test('the whole journey: wait, get admitted by push, hold, pay', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('Journey night', 1);
    const second = await newPage();
    await signInAndJoin(second.page, gw, 'bea', 'Journey night');
    await visible(second.page, 'buy-view');

    const first = await newPage();
    await first.page.goto(gw.base + '/');
    await assertAccessible(first.page, 'sign in');
    await signInAndJoin(first.page, gw, 'ann', 'Journey night');
    await visible(first.page, 'waiting-view');
    await first.page.locator('#rank', { hasText: '1' }).waitFor();
    assert.equal(await first.page.locator('#ahead').textContent(), 'You are next!');
    await first.page.locator('#connection[data-state="connected"][data-transport="ws"]').waitFor();
    // What to expect: the turn's length and the prices, before admission.
    assert.equal(await first.page.locator('#expect-turn').textContent(),
      'You will have 10 minutes to choose up to 4 seats and pay for them.');
    assert.equal(await first.page.locator('#expect-prices').textContent(), 'Seats cost 40 points each.');
    assert.match(await first.page.locator('#updated').textContent(), /^Updated (now|\d+ seconds? ago) · live\.$/);
    await assertAccessible(first.page, 'waiting');
    await screenshots(first.page, 'waiting-room');

    // The holder pays; the waiting fan is admitted by push.
    await buyFirstFreeSeat(second.page);
    await assertAccessible(second.page, 'done');
    await visible(first.page, 'buy-view');
    await first.page.locator('#seat-map [data-status="sold"]').waitFor();
    await assertAccessible(first.page, 'seat map');
    await screenshots(first.page, 'seat-map');
    await buyFirstFreeSeat(first.page);
    const seats = await gw.api('GET', `/v1/shows/${show.id}/seats`);
    assert.equal(seats.filter((s) => s.status === 'sold').length, 2);
    await first.context.close();
    await second.context.close();
  } finally {
    await gw.stop();
  }
});

test('with WebSockets blocked the page falls back to SSE and is admitted', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('No sockets night', 1);
    const holder = await gw.fan('holder', show.id);
    assert.equal(holder.state, 'active');

    const { context, page } = await newPage();
    await blockWebSockets(context);
    await signInAndJoin(page, gw, 'sid', 'No sockets night');
    await page.locator('#connection[data-state="connected"][data-transport="sse"]').waitFor();
    await page.locator('#rank', { hasText: '1' }).waitFor();

    await gw.api('DELETE', `/v1/shows/${show.id}/queue`, { headers: { 'x-queue-ticket': holder.ticket } });
    await visible(page, 'buy-view');
    assert.equal(await page.locator('#connection').getAttribute('data-transport'), 'sse');
    await context.close();
  } finally {
    await gw.stop();
  }
});

test('after a gateway restart the page reconnects and keeps its rank', { timeout: 120_000 }, async () => {
  const id = Math.random().toString(16).slice(2, 14);
  const database = `anteroom_t_b${id}`;
  const mysql = (sql) => execFileSync('mysql', ['--protocol=tcp', '-h127.0.0.1', '-uanteroom', '-panteroom', '-e', sql]);
  mysql(`CREATE DATABASE ${database}`);
  const gw = await Gateway.start({
    ANTEROOM_REDIS_URL: process.env.ANTEROOM_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    ANTEROOM_REDIS_PREFIX: `b${id}:`,
    ANTEROOM_DATABASE_URL: `mysql://anteroom:anteroom@127.0.0.1:3306/${database}`,
    ANTEROOM_AUTH_MODE: 'demo',
  });
  try {
    const show = await gw.createShow('Restart night', 1);
    await gw.fan('holder', show.id);
    await gw.fan('early1', show.id);
    await gw.fan('early2', show.id);

    const { context, page } = await newPage();
    await signInAndJoin(page, gw, 'patient', 'Restart night');
    await page.locator('#rank', { hasText: '3' }).waitFor();
    await page.locator('#connection[data-state="connected"][data-transport="ws"]').waitFor();

    await gw.stop();
    await page.locator('#connection[data-state="reconnecting"]').waitFor();
    await gw.start();
    await page.locator('#connection[data-state="connected"][data-transport="ws"]').waitFor();
    assert.equal(await page.locator('#rank').textContent(), '3');
    assert.equal(await page.locator('#waiting-view').isVisible(), true);
    assert.equal(await page.locator('#connection-banner').getAttribute('data-state'), 'fine');
    await context.close();
  } finally {
    await gw.stop();
    mysql(`DROP DATABASE ${database}`);
  }
});

test('never stuck: a restart with a new secret ends "reconnecting" and offers to rejoin within 10 s', { timeout: 120_000 }, async () => {
  const id = Math.random().toString(16).slice(2, 14);
  const database = `anteroom_t_n${id}`;
  const mysql = (sql) => execFileSync('mysql', ['--protocol=tcp', '-h127.0.0.1', '-uanteroom', '-panteroom', '-e', sql]);
  mysql(`CREATE DATABASE ${database}`);
  const gw = await Gateway.start({
    ANTEROOM_REDIS_URL: process.env.ANTEROOM_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    ANTEROOM_REDIS_PREFIX: `n${id}:`,
    ANTEROOM_DATABASE_URL: `mysql://anteroom:anteroom@127.0.0.1:3306/${database}`,
    ANTEROOM_AUTH_MODE: 'demo',
  });
  try {
    const show = await gw.createShow('Secret night', 1);
    await gw.fan('holder', show.id);
    const { context, page } = await newPage();
    await signInAndJoin(page, gw, 'stranded', 'Secret night');
    await page.locator('#rank', { hasText: '1' }).waitFor();
    await page.locator('#connection[data-state="connected"]').waitFor();

    // Down: a banner in the main content, said politely, with the retry
    // countdown; the footer says so too.
    await gw.stop();
    await page.locator('#connection-banner[data-state="lost"]').waitFor();
    assert.equal(await page.locator('#connection-lost').textContent(),
      'Connection lost — this number may be out of date.');
    assert.equal(await page.locator('#connection-lost').getAttribute('aria-live'), 'polite');
    await page.locator('#retry-countdown', { hasText: /^Trying again (in \d+ seconds?\.|now…)$/ }).waitFor();
    assert.equal(await page.locator('#connection').textContent(), 'reconnecting…');
    await assertAccessible(page, 'connection lost');

    // Back with another secret: the ticket can never work again. The page
    // leaves "reconnecting" and offers to join again, saying why.
    gw.env.ANTEROOM_TICKET_SECRET = 'a-completely-different-secret';
    await gw.start();
    const back = Date.now();
    await page.locator('#ended-view').waitFor({ state: 'visible', timeout: 10_000 });
    assert.ok(Date.now() - back < 10_000, `${Date.now() - back} ms after the restart`);
    assert.equal(await page.locator('#ended-title').textContent(), 'Your place was lost');
    assert.match(await page.locator('#ended-why').textContent(),
      /^Your place was lost — join again\. Why: The box office no longer recognises your place in line/);
    assert.equal(await page.locator('#rejoin').isVisible(), true);
    assert.equal(await page.locator('#connection').textContent(), 'not connected (no longer following a line)');
    assert.equal(await page.locator('#connection-banner').getAttribute('data-state'), 'fine');
    await assertAccessible(page, 'place lost');

    // Joining again with a sign-in the new secret does not know: sign in again.
    await page.locator('#rejoin').click();
    await visible(page, 'signin-view');
    assert.equal(await page.locator('#error').textContent(), 'You have been signed out. Please sign in again.');
    await page.getByLabel('Your name').fill('stranded');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Join the line for Secret night' }).click();
    await page.locator('#rank', { hasText: '1' }).waitFor();
    await context.close();
  } finally {
    await gw.stop();
    mysql(`DROP DATABASE ${database}`);
  }
});

test('a show that asks for proof of work: the page solves it unasked and is admitted', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('Guarded night', 1, { challenge_cost: 100_000 });
    const { token } = await gw.api('POST', '/v1/sessions', { body: { username: 'bot' } });
    const bare = await fetch(`${gw.base}/v1/shows/${show.id}/queue`, {
      method: 'POST', headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(bare.status, 403);
    assert.equal((await bare.json()).error.code, 'challenge_required');

    const { context, page } = await newPage();
    const joins = [];
    page.on('request', (req) => {
      if (req.method() === 'POST' && req.url().endsWith(`/v1/shows/${show.id}/queue`)) {
        joins.push(req.headers()['x-altcha'] ?? null);
      }
    });
    await signInAndJoin(page, gw, 'human', 'Guarded night');
    await visible(page, 'buy-view');
    // The first try learns that the show asks for a solution; the second
    // carries one, for this show.
    assert.equal(joins.length, 2, JSON.stringify(joins));
    assert.equal(joins[0], null);
    const solution = JSON.parse(Buffer.from(joins[1], 'base64').toString());
    assert.equal(solution.algorithm, 'SHA-256');
    assert.match(solution.salt, new RegExp(`\\?show=${show.id}&expires=\\d+&$`));
    assert.ok(Number.isInteger(solution.number) && solution.number <= 100_000);

    // The page's SHA-256 agrees with the browser's own (SubtleCrypto) on
    // messages of one, two and three blocks, in workers and on the page.
    const disagreements = await page.evaluate(async () => {
      const { solveChallenge } = await import('/anteroom.js');
      const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
      const found = [];
      for (const saltLength of [0, 1, 30, 50, 54, 55, 56, 63, 64, 100, 119, 120, 150]) {
        for (const number of [0, 9, 4321, 12345]) {
          const salt = 's'.repeat(saltLength);
          const challenge = hex(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(salt + number)));
          for (const workers of [0, 2]) {
            const altcha = await solveChallenge(
              { algorithm: 'SHA-256', challenge, salt, signature: '', maxnumber: number }, { workers });
            if (JSON.parse(atob(altcha)).number !== number) found.push({ saltLength, number, workers });
          }
        }
      }
      return found;
    });
    assert.deepEqual(disagreements, []);
    await context.close();

    // A page that may not start workers (a strict Content-Security-Policy)
    // solves on the page itself and still gets in line.
    const strict = await newPage();
    await strict.context.addInitScript(() => {
      window.Worker = class { constructor() { throw new DOMException('refused by CSP', 'SecurityError'); } };
    });
    await signInAndJoin(strict.page, gw, 'strict', 'Guarded night');
    await visible(strict.page, 'waiting-view');
    await strict.page.locator('#rank', { hasText: '1' }).waitFor();
    await strict.context.close();
  } finally {
    await gw.stop();
  }
});
