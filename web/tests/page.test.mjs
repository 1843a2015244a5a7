// Browser tests of the fan's page (issue 16), against the real gateway:
//
// 1. The seat map: sections with their names, prices and free seats, a
//    legend, labels with section, row, seat and price, one tab stop per
//    section and the arrow keys inside it, and another fan's hold counted.
// 2. A two-seat purchase: two seats held, points added for both, one
//    checkout, both sold.
// 3. The operator's notice: a banner for waiting (pushed and polling),
//    admitted and late fans, cleared by the operator.
// 4. A Korean browser through the whole journey: every view in Korean (no
//    English left on screen), the language switcher kept across a reload.
// Every view passed is scanned with axe-core; test 4 saves the Korean
// screenshots in docs/screenshots/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, Gateway, assertAccessible, blockEventSource, blockWebSockets, chromiumForFile, holdSeat,
  screenshots, signInAndJoin, visible,
} from './gateway.mjs';

const { newPage } = chromiumForFile();

const ARENA = [
  { name: 'Floor', rows: 2, seats_per_row: 6, price: 120 },
  { name: 'Lower Bowl', rows: 3, seats_per_row: 8, price: 80 },
  { name: 'Upper Bowl', rows: 2, seats_per_row: 10, price: 45 },
];

/** An admitted fan's page on an arena show, and the show's seats by label. */
async function admittedAt(gw, title, name, options) {
  const show = await gw.createShow(title, 5, { seats: ARENA });
  const fan = await newPage(options);
  await signInAndJoin(fan.page, gw, name, title);
  await visible(fan.page, 'buy-view');
  await fan.page.locator('#seat-map button.seat').first().waitFor();
  const seats = await gw.api('GET', `/v1/shows/${show.id}/seats`);
  return { show, ...fan, seat: (label) => seats.find((s) => s.label === label) };
}

const focusedSeat = (page) => page.evaluate(() => document.activeElement?.getAttribute('aria-label'));

test('the seat map: sections with names, prices and counts, a legend, labels, keyboard', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const { show, context, page, seat } = await admittedAt(gw, 'Arena night', 'mapper');
    const heads = await page.locator('#seat-map .section-head').allTextContents();
    assert.deepEqual(heads, [
      'Floor 120 points 12 of 12 free',
      'Lower Bowl 80 points 24 of 24 free',
      'Upper Bowl 45 points 20 of 20 free',
    ]);
    assert.deepEqual(await page.locator('.legend li').allTextContents(),
      [' free', '✓ held for you', ' held by another fan', '× sold']);
    const b = page.locator(`#seat-map button[data-seat="${seat('Lower Bowl R2-3').seat_id}"]`);
    assert.equal(await b.getAttribute('aria-label'), 'Lower Bowl, row 2, seat 3, 80 points, free');
    assert.equal(await b.textContent(), '3');

    // One tab stop per section; the arrow keys move inside it.
    assert.equal(await page.locator('#seat-map button.seat[tabindex="0"]').count(), 3);
    await page.locator('#seat-map button.seat[tabindex="0"]').first().focus();
    assert.equal(await focusedSeat(page), 'Floor, row 1, seat 1, 120 points, free');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    assert.equal(await focusedSeat(page), 'Floor, row 1, seat 3, 120 points, free');
    await page.keyboard.press('ArrowDown');
    assert.equal(await focusedSeat(page), 'Floor, row 2, seat 3, 120 points, free');
    await page.keyboard.press('End');
    assert.equal(await focusedSeat(page), 'Floor, row 2, seat 6, 120 points, free');
    await page.keyboard.press('Tab');
    assert.equal(await focusedSeat(page), 'Lower Bowl, row 1, seat 1, 80 points, free');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await focusedSeat(page), 'Floor, row 2, seat 6, 120 points, free', 'the section keeps its place');
    await page.keyboard.press('Enter');
    await page.locator(`#seat-map button[data-seat="${seat('Floor R2-6').seat_id}"][data-status="mine"]`).waitFor();
    assert.equal(await focusedSeat(page), 'Floor, row 2, seat 6, 120 points, held for you');
    await page.locator('#seat-map .section-head', { hasText: 'Floor 120 points 11 of 12 free' }).waitFor();

    // Another fan's hold: pushed, painted, counted.
    const other = await gw.fan('other', show.id);
    const upper = seat('Upper Bowl R1-1');
    await gw.api('POST', `/v1/shows/${show.id}/reservations`, {
      token: other.token, headers: { 'x-access-token': other.access_token }, body: { seat_id: upper.seat_id },
    });
    const taken = page.locator(`#seat-map button[data-seat="${upper.seat_id}"]`);
    await page.locator(`#seat-map button[data-seat="${upper.seat_id}"][data-status="held"]`).waitFor();
    assert.equal(await taken.getAttribute('aria-label'), 'Upper Bowl, row 1, seat 1, 45 points, held by another fan');
    assert.equal(await taken.getAttribute('aria-disabled'), 'true');
    await page.locator('#seat-map .section-head', { hasText: 'Upper Bowl 45 points 19 of 20 free' }).waitFor();
    await assertAccessible(page, 'seat map with a hold');

    // On a 390 px phone nothing but a section's own rows scrolls sideways.
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth), 390);
    await page.setViewportSize(DESKTOP);
    await assertAccessible(page, 'seat map, desktop');
    await context.close();
  } finally {
    await gw.stop();
  }
});

test('a two-seat purchase: two holds, points for both, one checkout', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const { show, context, page, seat } = await admittedAt(gw, 'Pair night', 'pair');
    const floor = seat('Floor R1-2');
    const lower = seat('Lower Bowl R1-2');
    await holdSeat(page, floor.seat_id);
    await holdSeat(page, lower.seat_id);
    assert.deepEqual(await page.locator('#hold-list li').allTextContents(), [
      'Floor, row 1, seat 2 — 120 points Let go',
      'Lower Bowl, row 1, seat 2 — 80 points Let go',
    ]);
    assert.equal(await page.locator('#hold-total').textContent(), '2 seats: 200 points');
    assert.equal(await page.locator('#charge').textContent(), 'Add 200 points');
    assert.equal(await page.locator('#pay').isDisabled(), true);
    await assertAccessible(page, 'checkout');
    await page.locator('#charge').click();
    await page.locator('#pay:not([disabled])', { hasText: 'Pay 200 points for 2 seats' }).click();
    await visible(page, 'done-view');
    assert.equal(await page.locator('#receipt').textContent(), '2 seats are yours: 200 points paid, 0 points left.');
    assert.deepEqual((await page.locator('#receipt-seats li').allTextContents()).map((s) => s.replace(/#\d+/, '#N')),
      ['Floor, row 1, seat 2 — payment #N', 'Lower Bowl, row 1, seat 2 — payment #N']);
    const seats = await gw.api('GET', `/v1/shows/${show.id}/seats`);
    assert.deepEqual(seats.filter((s) => s.status === 'sold').map((s) => s.label).sort(),
      ['Floor R1-2', 'Lower Bowl R1-2']);
    await context.close();
  } finally {
    await gw.stop();
  }
});

test('the operator notice: a banner for waiting, polling, admitted and late fans', { timeout: 120_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const show = await gw.createShow('Notice night', 1);
    const admitted = await newPage();
    await signInAndJoin(admitted.page, gw, 'inside', 'Notice night');
    await visible(admitted.page, 'buy-view');
    const waiting = await newPage();
    await signInAndJoin(waiting.page, gw, 'outside', 'Notice night');
    await waiting.page.locator('#rank', { hasText: '1' }).waitFor();
    const polling = await newPage();
    await blockWebSockets(polling.context);
    await blockEventSource(polling.context);
    await signInAndJoin(polling.page, gw, 'poller', 'Notice night');
    await polling.page.locator('#connection[data-state="connected"][data-transport="poll"]').waitFor();
    assert.equal(await waiting.page.locator('#operator-notice').isVisible(), false);

    const text = 'Gates open at 18:00.\nBring your ID.';
    await gw.admin('PATCH', `/v1/admin/shows/${show.id}`, { notice: text });
    for (const { page } of [admitted, waiting, polling]) {
      await visible(page, 'operator-notice');
      assert.equal(await page.locator('#operator-notice-title').textContent(), 'Message from the box office');
      assert.equal(await page.locator('#operator-notice-text').textContent(), text);
    }
    assert.equal(await waiting.page.locator('#announce').textContent(),
      `Message from the box office: ${text}`);
    await assertAccessible(waiting.page, 'waiting with a notice');
    await assertAccessible(admitted.page, 'seat map with a notice');

    // A fan who joins later sees it from the join's answer.
    const late = await newPage();
    await signInAndJoin(late.page, gw, 'late', 'Notice night');
    await visible(late.page, 'operator-notice');
    assert.equal(await late.page.locator('#operator-notice-text').textContent(), text);

    await gw.admin('PATCH', `/v1/admin/shows/${show.id}`, { notice: null });
    for (const { page } of [admitted, waiting, polling, late]) {
      await page.locator('#operator-notice').waitFor({ state: 'hidden' });
    }
    for (const { context } of [admitted, waiting, polling, late]) await context.close();
  } finally {
    await gw.stop();
  }
});

/** Text on screen in Latin letters that is not a name (the show's, the fan's, the brand, a language's). */
function englishLeft(text, allowed) {
  let rest = text;
  for (const word of ['anteroom', 'English', ...allowed]) rest = rest.split(word).join('');
  return rest.match(/[A-Za-z]{3,}/g) ?? [];
}

async function assertAllKorean(page, what, allowed) {
  const shown = await page.evaluate(() => document.body.innerText);
  assert.deepEqual(englishLeft(shown, allowed), [], `${what}: ${shown}`);
  await assertAccessible(page, `${what} (ko)`);
}

test('a Korean browser: the whole journey in Korean, and the chosen language kept', { timeout: 180_000 }, async () => {
  const gw = await Gateway.start();
  try {
    const title = 'Aurora';
    const show = await gw.createShow(title, 1, { seats: ARENA });
    const holder = await gw.fan('holder', show.id);
    const names = [title, 'Floor', 'Lower Bowl', 'Upper Bowl', 'minji'];

    const { context, page } = await newPage({ locale: 'ko-KR' });
    await page.goto(gw.base + '/');
    await page.locator('#signin-title', { hasText: '로그인' }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'ko');
    await assertAllKorean(page, 'sign in', names);
    await page.getByLabel('이름').fill('minji');
    await page.getByRole('button', { name: '로그인' }).click();
    await page.getByRole('button', { name: `${title} 대기열 들어가기` }).waitFor();
    await assertAllKorean(page, 'shows', names);
    await page.getByRole('button', { name: `${title} 대기열 들어가기` }).click();
    await page.locator('#rank', { hasText: '1' }).waitFor();
    assert.equal(await page.locator('#waiting-title').textContent(), '대기열에 계십니다');
    assert.equal(await page.locator('#ahead').textContent(), '다음 차례입니다!');
    assert.equal(await page.locator('#expect-turn').textContent(), '10분 동안 좌석을 최대 4석까지 고르고 결제할 수 있습니다.');
    assert.equal(await page.locator('#expect-prices').textContent(), '좌석 가격은 한 석에 45~120포인트입니다.');
    await page.locator('#connection', { hasText: '연결됨, 실시간 (웹소켓)' }).waitFor();
    await assertAllKorean(page, 'waiting', names);
    await screenshots(page, 'waiting-room');

    // Admitted by push when the holder leaves; the seat map in Korean.
    await gw.api('DELETE', `/v1/shows/${show.id}/queue`, { headers: { 'x-queue-ticket': holder.ticket } });
    await visible(page, 'buy-view');
    assert.equal(await page.locator('#buy-title').textContent(), '내 차례입니다!');
    const seats = await gw.api('GET', `/v1/shows/${show.id}/seats`);
    const pick = seats.find((s) => s.label === 'Lower Bowl R1-4');
    const b = page.locator(`#seat-map button[data-seat="${pick.seat_id}"]`);
    assert.equal(await b.getAttribute('aria-label'), 'Lower Bowl 1열 좌석 4, 80포인트, 선택 가능');
    assert.deepEqual(await page.locator('#seat-map .section-name').allTextContents(), ['Floor', 'Lower Bowl', 'Upper Bowl']);
    assert.deepEqual(await page.locator('#seat-map .section-price').allTextContents(), ['120포인트', '80포인트', '45포인트']);
    await holdSeat(page, pick.seat_id);
    assert.equal(await page.locator('#hold-total').textContent(), '1석: 80포인트');
    await assertAllKorean(page, 'seat map', [...names, 'Tab']); // the key's own name
    await screenshots(page, 'seat-map');
    await page.locator('#charge', { hasText: '80포인트 충전하기' }).click();
    await page.locator('#pay:not([disabled])', { hasText: '1석 80포인트 결제하기' }).click();
    await visible(page, 'done-view');
    assert.equal(await page.locator('#done-title').textContent(), '예매가 완료되었습니다!');
    assert.equal(await page.locator('#receipt').textContent(), '1석을 예매했습니다: 80포인트를 결제했고, 0포인트가 남았습니다.');
    await assertAllKorean(page, 'done', names);

    // The fan switches to English: kept across a reload, whatever the browser says.
    await page.getByLabel('언어').selectOption('en');
    await page.locator('#done-title', { hasText: "You're going!" }).waitFor();
    assert.equal(await page.locator('#receipt').textContent(), '1 seat is yours: 80 points paid, 0 points left.');
    await page.reload();
    await page.locator('#shows-title', { hasText: 'On sale' }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    assert.equal(await page.locator('#lang').inputValue(), 'en');
    await context.close();
  } finally {
    await gw.stop();
  }
});
