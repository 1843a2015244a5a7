// Browser tests of the on-sale states (issue 14), against the real gateway:
//
// 1. A scheduled sale: pages in the pre-queue show a countdown, follow the
//    opening when the operator moves it, and show their drawn place the
//    moment the sale opens, by push and by polling.
// 2. Operator controls while fans wait on WebSocket, SSE and polling: one
//    fan removed, the sale paused and resumed, then closed.
// 3. The last seat: "all seats held" while it is held, the sell-out pushed
//    to the waiting fan, and a join refused as sold out.
// 4. A show whose line is not open yet: the list and the refused join say
//    when it opens.
// Test 1 saves the pre-queue screenshots in docs/screenshots/; the views
// passed are scanned with axe-core.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  Gateway, assertAccessible, blockEventSource, blockWebSockets, chromiumForFile,
  recordTransitions, screenshots, signInAndJoin,
} from './gateway.mjs';
/** From the opening until every page shows its place: generous, on a busy machine. */
const OPENING_PATIENCE = 60_000;

const { newPage } = chromiumForFile();

/** A page that can only poll: WebSockets and event streams never get through. */
async function pollingPage() {
  const fan = await newPage();
  await blockWebSockets(fan.context);
  await blockEventSource(fan.context);
  return fan;
}

/** Where the page stands: 'prequeue', 'ranked' (with a place), 'active', 'ended', or 'joining'. */
function standing(page) {
  return page.evaluate(() => {
    const shown = (id) => !document.getElementById(id).hidden;
    if (shown('buy-view')) return 'active';
    if (shown('ended-view')) return 'ended';
    const phase = document.getElementById('waiting-view').dataset.phase;
    if (phase === 'ranked' && document.getElementById('rank').textContent !== '…') return 'ranked';
    return phase === 'prequeue' ? 'prequeue' : 'joining';
  });
}

/** Waits until `check()` holds, polling, or fails with `what` after `ms`. */
async function until(what, check, ms = OPENING_PATIENCE) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const rankOf = (page) => page.locator('#rank').textContent();

test('the pre-queue: a countdown, then the drawn place the moment the sale opens', { timeout: 180_000 }, async () => {
  const gw = await Gateway.start();
  try {
    // Far enough ahead that every page is in the pre-queue before it; the
    // operator then brings the opening forward.
    const show = await gw.createShow('Opening night', 1, {
      prequeue_opens_at: new Date(Date.now() - 60_000).toISOString(),
      starts_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
    const fans = [await newPage(), await newPage(), await pollingPage()];
    for (const [i, fan] of fans.entries()) {
      await recordTransitions(fan.context);
      await signInAndJoin(fan.page, gw, `early${i}`, 'Opening night');
      await fan.page.locator('#waiting-view[data-phase="prequeue"]').waitFor();
      assert.equal(await fan.page.locator('#waiting-title').textContent(), "You're in the pre-queue");
      // An hour ahead, less the time it took to get here.
      assert.match(await fan.page.locator('#countdown').textContent(), /^(59:\d\d|1:00:00)$/);
      assert.match(await fan.page.locator('#opens-at').textContent(), /^The sale opens (at|on) /);
      assert.equal(await fan.page.locator('#ranked').isVisible(), false, 'no place before the opening');
    }
    await fans[2].page.locator('#connection[data-state="connected"][data-transport="poll"]').waitFor();
    await assertAccessible(fans[0].page, 'pre-queue');
    await screenshots(fans[0].page, 'pre-queue');

    const startsAt = Date.now() + 4_000;
    await gw.admin('PATCH', `/v1/admin/shows/${show.id}`, { starts_at: new Date(startsAt).toISOString() });
    // The pushed pages hear of the new time before it comes.
    for (const { page } of fans.slice(0, 2)) {
      await page.waitForFunction(
        (at) => Math.abs(Date.parse(document.getElementById('countdown').dateTime) - at) < 1000, startsAt);
    }

    // Capacity 1: one fan is let in at the opening, the other two wait with
    // places 1 and 2, whoever was drawn where.
    const standings = await until('every page to leave the pre-queue', async () => {
      const all = await Promise.all(fans.map(({ page }) => standing(page)));
      return all.every((s) => s === 'active' || s === 'ranked') ? all : null;
    });
    assert.deepEqual([...standings].sort(), ['active', 'ranked', 'ranked'], JSON.stringify(standings));
    const waiting = fans.filter((_, i) => standings[i] === 'ranked');
    await until('the waiting places to be 1 and 2', async () => {
      const ranks = (await Promise.all(waiting.map(({ page }) => rankOf(page)))).sort();
      return ranks.join() === '1,2';
    });
    for (const { page } of waiting) {
      assert.equal(await page.locator('#prequeue').isVisible(), false);
      assert.equal(await page.locator('#waiting-title').textContent(), "You're in line");
      const log = await page.evaluate(() => window.transitions);
      const ranked = log.find((t) => t.kind === 'phase' && t.value === 'ranked' &&
        log.some((p) => p.kind === 'phase' && p.value === 'prequeue' && p.at <= t.at));
      assert.ok(ranked, JSON.stringify(log));
      // Not before the opening (the browser and the gateway share this clock;
      // RFC 3339 times may be kept to the second).
      assert.ok(ranked.at >= startsAt - 1000, `ranked ${startsAt - ranked.at} ms before the opening`);
      assert.ok(log.some((t) => t.kind === 'announce' && /^The sale has opened\. You are number \d+ in line\.$/.test(t.value)),
        JSON.stringify(log));
    }
    for (const { context } of fans) await context.close();
  } finally {
    await gw.stop();
  }
});

test('operator controls reach waiting fans on every transport: removed, paused, resumed, closed', { timeout: 180_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('Operator night', 1);
    const holder = await gw.fan('holder', show.id);
    assert.equal(holder.state, 'active');

    const ws = await newPage();
    await recordTransitions(ws.context);
    await signInAndJoin(ws.page, gw, 'by-socket', 'Operator night');
    await ws.page.locator('#connection[data-state="connected"][data-transport="ws"]').waitFor();
    await ws.page.locator('#rank', { hasText: '1' }).waitFor();

    const sse = await newPage();
    await blockWebSockets(sse.context);
    await signInAndJoin(sse.page, gw, 'by-stream', 'Operator night');
    await sse.page.locator('#connection[data-state="connected"][data-transport="sse"]').waitFor();
    await sse.page.locator('#rank', { hasText: '2' }).waitFor();

    const poll = await pollingPage();
    await signInAndJoin(poll.page, gw, 'by-polling', 'Operator night');
    await poll.page.locator('#connection[data-state="connected"][data-transport="poll"]').waitFor();
    await poll.page.locator('#rank', { hasText: '3' }).waitFor();

    // One fan removed by the operator: told so, with no offer to rejoin;
    // the fan behind moves up.
    await gw.admin('DELETE', `/v1/admin/shows/${show.id}/fans/by-stream`);
    await sse.page.locator('#ended-view').waitFor({ state: 'visible' });
    assert.equal(await sse.page.locator('#ended-title').textContent(), 'You were removed from the line');
    assert.equal(await sse.page.locator('#rejoin').isVisible(), false);
    await assertAccessible(sse.page, 'removed');
    await poll.page.locator('#rank', { hasText: '2' }).waitFor({ timeout: OPENING_PATIENCE });

    // Paused: a clear line, the place kept, no estimate.
    await gw.admin('POST', `/v1/admin/shows/${show.id}/pause`);
    for (const [{ page }, rank] of [[ws, '1'], [poll, '2']]) {
      await page.locator('#paused').waitFor({ state: 'visible', timeout: OPENING_PATIENCE });
      assert.match(await page.locator('#paused').textContent(), /Sale paused\./);
      assert.equal(await rankOf(page), rank);
      assert.equal(await page.locator('#eta').textContent(), '');
      assert.equal(await page.locator('#waiting-view').isVisible(), true);
    }
    await ws.page.waitForFunction(() => window.transitions.some(
      (t) => t.kind === 'announce' && t.value === 'The sale is paused. You keep your place in line. You are still number 1.'));
    await assertAccessible(ws.page, 'paused');

    // Resumed: back to the place, by a fresh rank.
    await gw.admin('POST', `/v1/admin/shows/${show.id}/resume`);
    for (const [{ page }, rank] of [[ws, '1'], [poll, '2']]) {
      await page.locator('#waiting-view[data-paused="false"]').waitFor({ timeout: OPENING_PATIENCE });
      assert.equal(await page.locator('#paused').isVisible(), false);
      assert.equal(await rankOf(page), rank);
    }
    await ws.page.waitForFunction(() => window.transitions.some(
      (t) => t.kind === 'announce' && t.value === 'The sale has resumed. You are number 1 in line.'));

    // Closed: every waiting fan is told, with no offer to rejoin.
    await gw.admin('POST', `/v1/admin/shows/${show.id}/close`);
    for (const { page } of [ws, poll]) {
      await page.locator('#ended-view').waitFor({ state: 'visible', timeout: OPENING_PATIENCE });
      assert.equal(await page.locator('#ended-title').textContent(), 'The sale has closed');
      assert.equal(await page.locator('#rejoin').isVisible(), false);
    }
    for (const { context } of [ws, sse, poll]) await context.close();
  } finally {
    await gw.stop();
  }
});

test('the last seat: held, then sold out to the waiting fan; a later join refused', { timeout: 180_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('Last seat night', 1, {
      seats: [{ name: 'Box', rows: 1, seats_per_row: 1, price: 40 }],
    });
    const buyer = await gw.fan('buyer', show.id);
    assert.equal(buyer.state, 'active');
    const hopeful = await newPage();
    await signInAndJoin(hopeful.page, gw, 'hopeful', 'Last seat night');
    await hopeful.page.locator('#rank', { hasText: '1' }).waitFor();
    await hopeful.page.locator('#connection[data-state="connected"]').waitFor();
    // A fan who sees the show on sale and clicks only after it sold out.
    const late = await newPage();
    await late.page.goto(gw.base + '/');
    await late.page.getByLabel('Your name').fill('late');
    await late.page.getByRole('button', { name: 'Sign in' }).click();
    const join = late.page.getByRole('button', { name: 'Join the line for Last seat night' });
    await join.waitFor();

    const [seat] = await gw.api('GET', `/v1/shows/${show.id}/seats`);
    const buying = { token: buyer.token, headers: { 'x-access-token': buyer.access_token } };
    const hold = await gw.api('POST', `/v1/shows/${show.id}/reservations`, { ...buying, body: { seat_id: seat.seat_id } });
    await hopeful.page.locator('#notice').waitFor({ state: 'visible' });
    assert.match(await hopeful.page.locator('#notice').textContent(), /^Every seat left is held by fans buying right now\./);
    await assertAccessible(hopeful.page, 'all seats held');

    await gw.api('POST', '/v1/points/charge', { token: buyer.token, body: { amount: seat.price } });
    await gw.api('POST', '/v1/payments', {
      token: buyer.token,
      headers: { ...buying.headers, 'idempotency-key': randomUUID() },
      body: { reservation_id: hold.reservation_id },
    });
    await hopeful.page.locator('#ended-view').waitFor({ state: 'visible' });
    assert.equal(await hopeful.page.locator('#ended-title').textContent(), 'Sold out');
    assert.equal(await hopeful.page.locator('#rejoin').isVisible(), false);

    await join.click();
    await late.page.locator('#ended-view').waitFor({ state: 'visible' });
    assert.equal(await late.page.locator('#ended-title').textContent(), 'Sold out');
    assert.equal(await late.page.locator('#error').isVisible(), false);

    // Back in the list the show says so, with nothing to join.
    await late.page.getByRole('button', { name: 'Back to the shows' }).click();
    await late.page.locator('#shows-view').waitFor({ state: 'visible' }); // the list read afresh
    const listed = late.page.locator('#shows li', { hasText: 'Last seat night' });
    assert.equal(await listed.locator('.state').textContent(), 'Sold out.');
    assert.equal(await listed.getByRole('button').count(), 0, 'nothing to join');
    await assertAccessible(late.page, 'shows with one sold out');
    for (const { context } of [hopeful, late]) await context.close();
  } finally {
    await gw.stop();
  }
});

test('a line not open yet: the list and the refused join say when it opens', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    await gw.createShow('Next month night', 1, {
      prequeue_opens_at: new Date(Date.now() + 3_600_000).toISOString(),
      starts_at: new Date(Date.now() + 7_200_000).toISOString(),
    });
    const { context, page } = await newPage();
    await page.goto(gw.base + '/');
    await page.getByLabel('Your name').fill('eager');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const listed = page.locator('#shows li', { hasText: 'Next month night' });
    assert.match(await listed.locator('.state').textContent(), /^The line opens (at|on) /);
    await page.getByRole('button', { name: 'Join the line for Next month night' }).click();
    await page.locator('#ended-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#ended-title').textContent(), 'Not open yet');
    assert.match(await page.locator('#ended-why').textContent(),
      /^The line for this show opens (at|on) .+\. The sale starts (at|on) .+\.$/);
    assert.equal(await page.locator('#rejoin').textContent(), 'Try again');
    assert.equal(await page.locator('#error').isVisible(), false);
    await context.close();
  } finally {
    await gw.stop();
  }
});
