// The waiting room page: sign in → shows → line → seats → pay → confirmation.
// All queue traffic goes through ./anteroom.js; every word comes from the
// message catalogues through ./i18n.js; this file only renders.

import { api, join } from './anteroom.js';
import {
  ago, clock, duration, has, language, preferredLanguage, setLanguage, t, when,
} from './i18n.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['signin-view', 'shows-view', 'waiting-view', 'buy-view', 'done-view', 'ended-view'];
const base = location.href;
const store = sessionStorage;
/// Seats a fan may hold at once (the gateway's `sales.max_holds`, 4 by
/// default; a lower limit answers `hold_limit`, said as such).
const HOLD_LIMIT = 4;

// In jwt mode the ticketing site hands the page the fan's token in the URL
// fragment (`#token=<jwt>`; a fragment never reaches a server log), and the
// sign-in form is skipped. The fragment is removed once read.
const handed = new URLSearchParams(location.hash.slice(1)).get('token');
if (handed) {
  store.setItem('anteroom.token', handed);
  store.setItem('anteroom.name', subjectOf(handed) ?? 'you');
  history.replaceState(null, '', location.pathname + location.search);
}

/** The `sub` of a JWT, read without verifying (only to greet the fan). */
function subjectOf(jwt) {
  try {
    const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

const state = {
  token: store.getItem('anteroom.token'),
  name: store.getItem('anteroom.name'),
  show: null, // {id, title, session_ttl_seconds?}
  client: null,
  access: null, // access token while active
  activeUntil: null,
  firstRank: null,
  lastAnnounced: null,
  place: null, // {rank, ahead, eta} as last told
  updatedAt: null, // when the place was last told (ms)
  holds: [], // [{reservation_id, seat_id, price, hold_expires_at, key}]
  paid: [], // [{seat_id, price, payment_id}]
  balance: null,
  timers: [],
  phase: null, // 'prequeue' | 'ranked' while in line
  paused: false,
  startsAt: null, // the opening of a pre-queued fan's sale
  countdown: null,
  connection: { state: 'idle', transport: null, retryAt: null },
  notice: '', // the operator's notice ('' for none)
  allSeatsHeld: false,
  ended: null, // {title, why} of the ended view, as keys and parameters
  // The seat map: the show's layout, every seat's status at `seatVersion`
  // (availability + the `seats` deltas on top), and deltas that came
  // before the availability read answered.
  layout: null, // {show_id, digest, seats: [seat], sections: [section]}
  byId: new Map(), // seat_id → seat {seat_id, label, section, sectionIndex, row, number, price}
  buttons: new Map(), // seat_id → its button
  statuses: new Map(), // seat_id → 'available' | 'held' | 'sold'
  seatVersion: null,
  earlyDeltas: [],
};

// ---------------------------------------------------------------- words

/** An API error (or a client-side one) in the fan's language. */
function errorText(e) {
  return has(`errors.${e.code}`) ? t(`errors.${e.code}`) : t('errors.unknown');
}

function say(e) {
  state.lastError = e;
  const box = $('error');
  box.textContent = errorText(e);
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

function announce(text) {
  $('announce').textContent = text;
}

function showView(id) {
  for (const v of VIEWS) $(v).hidden = v !== id;
  const heading = $(id).querySelector('h2');
  heading?.setAttribute('tabindex', '-1');
  heading?.focus();
  renderBanners();
}

function currentView() {
  return VIEWS.find((v) => !$(v).hidden);
}

function call(method, path, opts = {}) {
  return api(base, method, path, { token: state.token, ...opts });
}

function every(ms, fn) {
  fn();
  const timer = setInterval(fn, ms);
  state.timers.push(timer);
  return timer;
}

function stopCountdown() {
  clearInterval(state.countdown);
  state.countdown = null;
}

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  stopCountdown();
}

function secondsLeft(until) {
  return Math.max(0, Math.round((new Date(until).getTime() - Date.now()) / 1000));
}

function mmss(seconds) {
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, '0');
  return `${m}:${s}`;
}

/** A countdown: `4:05`, `1:02:03`, or `2 days 1:02:03`. */
function countdownText(seconds) {
  const days = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const rest = mmss(seconds % 3600);
  const hms = h > 0 || days > 0 ? `${h}:${rest.padStart(5, '0')}` : rest;
  return days > 0 ? t('countdown.days', { count: days, clock: hms }) : hms;
}

/** A seat in words: `Floor, row 3, seat 7`. */
function seatName(seat) {
  return t('seat.name', { section: seat.section, row: seat.row, seat: seat.number });
}

// ---------------------------------------------------------------- language

async function switchLanguage(code) {
  await setLanguage(code, { remember: true });
  $('lang').value = language();
  rerender();
}

/** Says everything on screen again in the current language. */
function rerender() {
  if (state.name) $('who').textContent = t('who', { name: state.name });
  renderConnection();
  renderBanners();
  const view = currentView();
  if (view === 'shows-view') listShows({ focus: false }).catch(say);
  if (view === 'waiting-view') {
    setPhase(state.phase ?? 'ranked');
    if (state.phase === 'prequeue' && state.startsAt) renderPrequeue();
    if (state.place) renderPlace();
    renderNotice();
    renderExpect();
  }
  if (view === 'buy-view') {
    renderBuyTitle();
    if (state.layout) drawSeats();
    renderHold();
  }
  if (view === 'done-view') renderReceipt();
  if (view === 'ended-view' && state.ended) renderEnded();
  if (!$('error').hidden && state.lastError) say(state.lastError);
}

$('lang').addEventListener('change', (e) => { switchLanguage(e.target.value).catch(() => {}); });

// ---------------------------------------------------------------- sign in

$('signin').addEventListener('submit', async (e) => {
  e.preventDefault();
  clearError();
  try {
    const name = $('name').value.trim();
    const res = await api(base, 'POST', '/v1/sessions', { body: { username: name } });
    state.token = res.token;
    state.name = name;
    store.setItem('anteroom.token', res.token);
    store.setItem('anteroom.name', name);
    await listShows();
  } catch (err) {
    say(err);
  }
});

/** The token no longer signs the fan in (a gateway with a new secret): sign in again. */
function signedOut(e) {
  store.removeItem('anteroom.token');
  state.token = null;
  $('who').hidden = true;
  stopTimers();
  state.client?.stop();
  showView('signin-view');
  say(e);
}

const SIGNED_OUT = new Set(['invalid_token', 'token_expired', 'missing_token']);

async function listShows({ focus = true } = {}) {
  $('who').textContent = t('who', { name: state.name });
  $('who').hidden = false;
  // Busiest first: the shows fans are queueing for now.
  const shows = await call('GET', '/v1/shows?sort=demand');
  $('shows').replaceChildren(...shows.map((s) => {
    const li = document.createElement('li');
    const title = document.createElement('p');
    title.className = 'title';
    title.textContent = s.title;
    const sale = document.createElement('p');
    sale.className = 'state';
    sale.textContent = saleState(s);
    const size = document.createElement('p');
    size.className = 'hint';
    const q = s.queue;
    size.textContent = q.prequeued
      ? t('shows.size_prequeue', { prequeued: q.prequeued, waiting: q.waiting, active: q.active, capacity: q.capacity })
      : t('shows.size', { waiting: q.waiting, active: q.active, capacity: q.capacity });
    li.append(title, sale, size);
    // A show that is over has nothing to join; every other state lets the
    // fan try (a scheduled show answers with its opening time).
    if (s.state !== 'sold_out' && s.state !== 'closed') {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = t('shows.join');
      b.setAttribute('aria-label', t('shows.join_label', { title: s.title }));
      b.addEventListener('click', () => enterLine({ id: s.id, title: s.title, session_ttl_seconds: s.session_ttl_seconds }));
      li.append(b);
    }
    return li;
  }));
  if (focus || currentView() !== 'shows-view') showView('shows-view');
}

/** A show's state in words, for the list. */
function saleState(s) {
  switch (s.state) {
    case 'scheduled':
      return s.prequeue_opens_at ? t('state.scheduled', { when: when(s.prequeue_opens_at) }) : t('state.scheduled_unknown');
    case 'prequeue':
      return s.starts_at ? t('state.prequeue', { when: when(s.starts_at) }) : t('state.prequeue_unknown');
    case 'paused':
      return t('state.paused');
    case 'sold_out':
      return t('state.sold_out');
    case 'closed':
      return t('state.closed');
    default:
      return t('state.open');
  }
}

// ---------------------------------------------------------------- the line

function enterLine(show) {
  clearError();
  stopTimers();
  state.client?.stop();
  state.show = show;
  store.setItem('anteroom.show', JSON.stringify(show));
  Object.assign(state, {
    firstRank: null, lastAnnounced: null, access: null, holds: [], paid: [], startsAt: null,
    place: null, updatedAt: null, notice: '', allSeatsHeld: false, ended: null,
  });
  setPaused(false);
  setPhase('ranked');
  document.querySelectorAll('[data-show-title]').forEach((n) => { n.textContent = show.title; });
  $('rank').textContent = '…';
  $('ahead').textContent = t('line.finding');
  $('eta').textContent = '';
  $('updated').textContent = '';
  renderNotice();
  showView('waiting-view');
  every(1000, renderUpdated);
  loadExpectations().catch(() => {});

  const client = join(show.id, { token: state.token, baseUrl: base });
  state.client = client;
  client.addEventListener('prequeue', (e) => onPrequeue(e.detail));
  client.addEventListener('rank', (e) => onRank(e.detail));
  client.addEventListener('paused', (e) => onPaused(e.detail));
  client.addEventListener('notice', (e) => onNotice(e.detail));
  client.addEventListener('active', (e) => onActive(e.detail));
  client.addEventListener('seats', (e) => onSeats(e.detail));
  client.addEventListener('expiring', (e) => onExpiring(e.detail));
  client.addEventListener('expired', () => onEnded({ title: 'ended.title', why: 'ended.expired', rejoin: true }));
  client.addEventListener('closed', (e) => onClosed(e.detail));
  client.addEventListener('connection', (e) => onConnection(e.detail));
  client.addEventListener('transport', (e) => {
    state.connection.transport = e.detail.transport;
    renderConnection();
  });
  client.addEventListener('challenge', (e) => {
    if (e.detail.state === 'solving') $('ahead').textContent = t('line.checking');
  });
  client.addEventListener('error', (e) => {
    const { code, status } = e.detail;
    if (SIGNED_OUT.has(code)) {
      signedOut(e.detail);
    } else if (ENDINGS.has(code)) {
      onClosed({ reason: code });
    } else if (code === 'not_open_yet') {
      notOpenYet();
    } else if (status === 401 || status === 404) {
      // The place is lost: the ticket is refused, or the gateway no longer
      // knows the show or the spot. Say why, and offer to join again.
      onEnded({ title: 'ending.lost.title', why: 'ending.lost.why', reason: code, rejoin: true });
    } else {
      say(e.detail);
    }
  });
}

/**
 * In line: 'prequeue' (a countdown to the opening, no place yet) or
 * 'ranked' (a place). The heading says which, in words.
 */
function setPhase(phase) {
  if (phase !== 'prequeue') stopCountdown();
  state.phase = phase;
  $('waiting-view').dataset.phase = phase;
  $('prequeue').hidden = phase !== 'prequeue';
  $('ranked').hidden = phase === 'prequeue';
  $('waiting-title').textContent = t(phase === 'prequeue' ? 'waiting.title_prequeue' : 'waiting.title');
}

function setPaused(paused) {
  state.paused = paused;
  $('waiting-view').dataset.paused = String(paused);
  $('paused').hidden = !paused;
}

function onPrequeue({ starts_at: startsAt }) {
  const moved = state.phase !== 'prequeue' || state.startsAt !== startsAt;
  state.startsAt = startsAt;
  setPhase('prequeue');
  renderPrequeue();
  if (moved) announce(t('prequeue.announce', { when: when(startsAt) }));
}

function renderPrequeue() {
  const startsAt = state.startsAt;
  const time = $('countdown');
  time.dateTime = startsAt;
  $('opens-at').textContent = t('prequeue.opens_at', { when: when(startsAt) });
  const tick = () => {
    const left = secondsLeft(startsAt);
    // The device's clock may be a little off: at zero the page waits for the
    // gateway's first rank, which is what opens the sale.
    time.textContent = left > 0 ? countdownText(left) : t('prequeue.opening_now');
  };
  tick();
  clearInterval(state.countdown);
  state.countdown = setInterval(tick, 1000);
}

/** The fan's place, from a rank frame or a paused status. */
function showPlace(rank, ahead, eta) {
  if (state.firstRank === null || rank > state.firstRank) state.firstRank = rank;
  state.place = { rank, ahead, eta };
  state.updatedAt = Date.now();
  renderPlace();
}

function renderPlace() {
  const { rank, ahead, eta } = state.place;
  $('rank').textContent = rank;
  $('ahead').textContent = ahead === 0 ? t('line.next') : t('line.ahead', { count: ahead });
  const progress = $('progress');
  progress.max = state.firstRank;
  progress.value = state.firstRank - rank + 1;
  renderEta();
  renderUpdated();
}

/** The estimate with the clock time it points at; none while paused. */
function renderEta() {
  const eta = state.place?.eta;
  const box = $('eta');
  if (state.paused) {
    box.textContent = '';
  } else if (eta == null) {
    box.textContent = t('line.eta_unknown');
  } else {
    const at = new Date((state.updatedAt ?? Date.now()) + eta * 1000);
    const time = document.createElement('time');
    time.dateTime = at.toISOString();
    time.textContent = clock(at);
    // The sentence is the catalogue's; the clock time in it is a <time>.
    const [before, after = ''] = t(eta < 60 ? 'line.eta_soon' : 'line.eta', { duration: duration(eta), time: '\u0000' })
      .split('\u0000');
    box.replaceChildren(before, time, after);
  }
}

/** "Updated N s ago": how old the place on screen is. */
function renderUpdated() {
  if (state.updatedAt === null || state.phase !== 'ranked') return;
  const seconds = (Date.now() - state.updatedAt) / 1000;
  const live = state.connection.state === 'connected' && state.connection.transport !== 'poll';
  $('updated').textContent = t(live ? 'line.updated_live' : 'line.updated', { ago: ago(seconds) });
}

function onRank({ rank, ahead, eta_seconds: eta }) {
  const opened = state.phase === 'prequeue';
  const resumed = state.paused;
  setPhase('ranked');
  setPaused(false);
  showPlace(rank, ahead, eta);
  // Announce politely, and not every tick: on the first rank, on the
  // opening and a resumption, and then when it has moved by a tenth (or
  // reached the last ten).
  const last = state.lastAnnounced;
  if (opened || resumed || last === null || rank <= 10 || last - rank >= Math.max(1, Math.ceil(last / 10))) {
    state.lastAnnounced = rank;
    const key = opened ? 'line.announce_opened' : resumed ? 'line.announce_resumed' : 'line.announce';
    announce(t(key, { rank }));
  }
}

function onPaused({ rank, ahead }) {
  const news = !state.paused;
  setPaused(true);
  if (rank != null) {
    if (state.phase === 'prequeue') setPhase('ranked');
    showPlace(rank, ahead, null);
  }
  renderEta();
  if (news) {
    const place = state.phase === 'ranked' ? state.place?.rank : null;
    announce(place != null ? t('paused.announce_place', { rank: place }) : t('paused.announce'));
  }
}

function onNotice({ code, text }) {
  if (code === 'operator') {
    state.notice = text ?? '';
    renderBanners();
    if (state.notice) announce(t('notice.operator_announce', { text: state.notice }));
  } else if (code === 'all_seats_held') {
    state.allSeatsHeld = true;
    renderNotice();
    announce(t('notice.all_seats_held'));
  }
}

function renderNotice() {
  const box = $('notice');
  box.hidden = !state.allSeatsHeld;
  box.textContent = state.allSeatsHeld ? t('notice.all_seats_held') : '';
}

/**
 * What the fan will need when their turn comes: the turn's length, the
 * seats' prices (from the public layout) and their points.
 */
async function loadExpectations() {
  const show = state.show;
  const [layout, points] = await Promise.all([
    call('GET', `/v1/shows/${show.id}/layout`),
    call('GET', '/v1/points').catch(() => null),
  ]);
  if (state.show !== show) return;
  state.prices = layout.sections.map((s) => s.price);
  state.balance = points?.balance ?? state.balance;
  renderExpect();
}

function renderExpect() {
  const prices = state.prices;
  const ttl = state.show?.session_ttl_seconds;
  $('expect').hidden = !prices && !ttl;
  $('expect-turn').hidden = !ttl;
  if (ttl) $('expect-turn').textContent = t('expect.turn', { duration: duration(ttl), max: HOLD_LIMIT });
  const min = prices?.length ? Math.min(...prices) : null;
  const max = prices?.length ? Math.max(...prices) : null;
  $('expect-prices').hidden = !prices;
  $('expect-prices').textContent = !prices ? '' : min === null ? t('expect.no_seats')
    : min === max ? t('expect.price', { price: min }) : t('expect.prices', { min, max });
  $('expect-balance').hidden = state.balance == null || !prices?.length;
  $('expect-balance').textContent = t('expect.balance', { balance: state.balance ?? 0 });
}

// ---------------------------------------------------------------- the connection

function onConnection(detail) {
  const was = state.connection.state;
  state.connection.state = detail.state;
  state.connection.retryAt = detail.retry_at ?? null;
  renderConnection();
  renderBanners();
  renderUpdated();
  if (detail.state === 'connected' && (was === 'reconnecting' || was === 'offline')) announce(t('connection.back'));
  if ((detail.state === 'reconnecting' || detail.state === 'offline') && was !== 'reconnecting' && was !== 'offline') {
    announce(lostText());
  }
}

/** The footer: how the page follows the line right now, truthfully. */
function renderConnection() {
  const el = $('connection');
  const { state: s, transport } = state.connection;
  el.dataset.state = s;
  if (transport) el.dataset.transport = transport;
  el.textContent = s === 'connected' ? t(`footer.${transport ?? 'ws'}`)
    : s === 'reconnecting' ? t('footer.reconnecting')
      : s === 'offline' ? t('footer.offline')
        : s === 'stopped' ? t('footer.stopped') : t('footer.idle');
}

function lostText() {
  if (state.connection.state === 'offline') return t('connection.offline');
  return t(currentView() === 'buy-view' ? 'connection.lost_seats' : 'connection.lost');
}

/**
 * The banners in the main content: the connection lost (with the retry
 * countdown) while the page follows a place, and the operator's notice.
 */
function renderBanners() {
  const inLine = ['waiting-view', 'buy-view'].includes(currentView());
  const s = state.connection.state;
  const lost = inLine && (s === 'reconnecting' || s === 'offline');
  const banner = $('connection-banner');
  banner.dataset.state = lost ? 'lost' : 'fine';
  const text = lost ? lostText() : '';
  if ($('connection-lost').textContent !== text) $('connection-lost').textContent = text;
  renderRetry();
  const notice = $('operator-notice');
  notice.hidden = !inLine || !state.notice;
  $('operator-notice-text').textContent = state.notice;
}

function renderRetry() {
  const { state: s, retryAt } = state.connection;
  const show = $('connection-banner').dataset.state === 'lost' && s === 'reconnecting' && retryAt !== null;
  $('connection-retry').hidden = !show;
  if (!show) return;
  const left = Math.ceil((retryAt - Date.now()) / 1000);
  const timer = $('retry-countdown');
  timer.dateTime = `PT${Math.max(0, left)}S`;
  timer.textContent = left > 0 ? t('connection.retry_in', { count: left }) : t('connection.retrying');
}
setInterval(renderRetry, 250);

// ---------------------------------------------------------------- endings

/** How a place in line can end, by the `closed` reason; whether joining again can help. */
const ENDINGS = new Map([
  ['left', true], ['abandoned', true], ['not_in_queue', true],
  ['sold_out', false], ['show_closed', false], ['removed', false],
]);

function onClosed({ reason }) {
  if (reason === 'completed') return; // the receipt is already on screen
  const known = ENDINGS.has(reason);
  const key = known ? reason : 'other';
  onEnded({ title: `ending.${key}.title`, why: `ending.${key}.why`, rejoin: known ? ENDINGS.get(reason) : true });
}

/**
 * The place ended. `ending`: the heading and the sentence (catalogue keys,
 * with their parameters), and whether to offer joining again (pointless
 * once the show is sold out or closed).
 */
function onEnded(ending) {
  stopTimers();
  state.client?.stop();
  if (!$('done-view').hidden) return;
  state.ended = ending;
  renderEnded();
  showView('ended-view');
}

function renderEnded() {
  const e = state.ended;
  $('ended-title').textContent = t(e.title);
  const params = { ...e.params };
  if (e.reason) params.reason = errorText({ code: e.reason });
  $('ended-why').textContent = e.whyText ?? t(e.why, params);
  $('rejoin').hidden = e.rejoin === false;
  $('rejoin').textContent = t(e.rejoinLabel ?? 'ended.rejoin');
}

/** A join refused because the line has not opened: say when it opens, if the show says. */
async function notOpenYet() {
  let show = null;
  try {
    show = (await call('GET', '/v1/shows')).find((s) => s.id === state.show.id) ?? null;
  } catch {
    // The plain sentence below still holds.
  }
  const opens = show?.prequeue_opens_at ?? show?.starts_at;
  const ending = { title: 'not_open.title', rejoin: true, rejoinLabel: 'ended.try_again', why: 'not_open.unknown' };
  if (opens && show?.prequeue_opens_at && show?.starts_at) {
    ending.why = 'not_open.opens_and_starts';
    ending.params = { when: when(show.prequeue_opens_at), start: when(show.starts_at) };
  } else if (opens) {
    ending.why = 'not_open.opens';
    ending.params = { when: when(opens) };
  }
  onEnded(ending);
}

$('leave').addEventListener('click', async () => {
  await state.client?.leave();
  stopTimers();
  await listShows();
});

$('rejoin').addEventListener('click', () => enterLine(state.show));
$('again').addEventListener('click', () => { stopTimers(); listShows().catch(say); });
$('ended-shows').addEventListener('click', () => { clearError(); listShows().catch(say); });

// ---------------------------------------------------------------- admitted

function onActive({ access_token: access, active_until: until }) {
  stopCountdown();
  state.access = access;
  state.activeUntil = until;
  store.setItem('anteroom.access', access);
  showView('buy-view');
  renderBuyTitle();
  announce(t('buy.announce', { max: HOLD_LIMIT }));
  every(1000, () => {
    $('session-left').textContent = t('buy.session_left', { time: mmss(secondsLeft(until)) });
    const expired = state.holds.filter((h) => secondsLeft(h.hold_expires_at) === 0);
    if (expired.length) {
      state.holds = state.holds.filter((h) => !expired.includes(h));
      expired.forEach((h) => repaint(h.seat_id));
      say({ code: 'hold_expired' });
    }
    renderHoldLeft();
    if (expired.length) renderHold();
  });
  // Changes come as `seats` messages; only REST polling (no push) reads
  // the availability again now and then.
  state.seatVersion = null;
  loadSeats().catch(say);
  const poll = setInterval(() => {
    if (state.connection.transport === 'poll') loadSeats().catch(say);
  }, 3000);
  state.timers.push(poll);
  refreshBalance().catch(say);
}

function renderBuyTitle() {
  $('map-title').textContent = t('map.title', { max: HOLD_LIMIT });
}

function onExpiring({ seconds_left: s }) {
  const box = $('expiring');
  box.textContent = t('buy.expiring', { count: s });
  box.hidden = false;
}

// ---------------------------------------------------------------- seats

const STATUS_CODES = ['available', 'held', 'sold'];

/** The show's layout (the browser revalidates it by its ETag). */
async function loadLayout() {
  const layout = await call('GET', `/v1/shows/${state.show.id}/layout`);
  const seats = [];
  layout.sections.forEach((section, sectionIndex) => {
    for (const row of section.rows) {
      for (const seat of row.seats) {
        seats.push({
          seat_id: seat.seat_id,
          label: seat.label,
          section: section.name,
          sectionIndex,
          price: section.price,
          row: row.row.replace(/^R/, ''),
          number: seat.label.slice(seat.label.lastIndexOf('-') + 1),
        });
      }
    }
  });
  state.layout = { show_id: layout.show_id, digest: null, seats, sections: layout.sections };
  state.byId = new Map(seats.map((s) => [s.seat_id, s]));
}

/**
 * Reads the availability (and the layout the first time, or when the
 * availability names another one) and draws the map; then applies the
 * deltas that came meanwhile.
 */
async function loadSeats() {
  if (state.layout?.show_id !== state.show.id) await loadLayout();
  let a = await call('GET', `/v1/shows/${state.show.id}/availability`);
  if (state.layout.digest !== null && state.layout.digest !== a.layout) {
    await loadLayout();
    a = await call('GET', `/v1/shows/${state.show.id}/availability`);
  }
  state.layout.digest = a.layout;
  const statuses = new Map();
  let at = 0;
  for (const section of a.sections) {
    const bits = Uint8Array.from(atob(section.bitmap), (c) => c.charCodeAt(0));
    for (let i = 0; i < section.seats; i++, at++) {
      const code = (bits[i >> 2] >> (6 - 2 * (i & 3))) & 3;
      statuses.set(state.layout.seats[at].seat_id, STATUS_CODES[code] ?? 'sold');
    }
  }
  // A read older than what the map already shows changes nothing.
  if (state.seatVersion !== null && a.version < state.seatVersion) return;
  state.statuses = statuses;
  state.seatVersion = a.version;
  drawSeats();
  const early = state.earlyDeltas;
  state.earlyDeltas = [];
  early.forEach(onSeats);
}

/** A `seats` message: applied in version order; a gap means one was missed, so read again. */
function onSeats(delta) {
  if (state.seatVersion === null) {
    state.earlyDeltas.push(delta);
    return;
  }
  if (delta.version <= state.seatVersion) return;
  if (delta.version > state.seatVersion + 1) {
    loadSeats().catch(say);
    return;
  }
  state.seatVersion = delta.version;
  const sections = new Set();
  for (const { seat_id: id, status } of delta.changes) {
    state.statuses.set(id, status);
    repaint(id);
    const seat = state.byId.get(id);
    if (seat) sections.add(seat.sectionIndex);
  }
  sections.forEach(renderSectionCount);
}

const isMine = (id) => state.holds.some((h) => h.seat_id === id);

/** Where a seat stands for this fan: mine, available, held (by another fan) or sold. */
function seatStatus(id) {
  if (isMine(id)) return 'mine';
  return state.statuses.get(id) ?? 'sold';
}

function paintSeat(b, seat) {
  const status = seatStatus(seat.seat_id);
  b.dataset.status = status;
  b.setAttribute('aria-pressed', String(status === 'mine'));
  // Seats that cannot be chosen stay focusable (arrow keys reach them and
  // say why), so they are marked, not disabled.
  const choosable = status === 'mine' || (status === 'available' && state.holds.length < HOLD_LIMIT);
  b.setAttribute('aria-disabled', String(!choosable));
  b.setAttribute('aria-label', t('seat.label', {
    section: seat.section, row: seat.row, seat: seat.number, price: seat.price, status: t(`seat.${status}`),
  }));
}

function repaint(id) {
  const b = state.buttons.get(id);
  if (b) paintSeat(b, state.byId.get(id));
}

function sectionCounts(index) {
  let available = 0;
  let total = 0;
  for (const seat of state.layout.seats) {
    if (seat.sectionIndex !== index) continue;
    total += 1;
    if (state.statuses.get(seat.seat_id) === 'available') available += 1;
  }
  return { available, total };
}

function renderSectionCount(index) {
  const el = document.getElementById(`section-${index}-count`);
  if (el) el.textContent = t('map.available', sectionCounts(index));
}

/**
 * The map: one block per section (its name, price and free seats visible),
 * its seats row by row. Each section is one tab stop; the arrow keys move
 * inside it (a roving tabindex).
 */
function drawSeats() {
  const map = $('seat-map');
  const focused = Number(document.activeElement?.dataset?.seat) || null;
  const tabStops = new Map(); // section index → the seat that holds its tab stop
  for (const b of map.querySelectorAll('button.seat[tabindex="0"]')) {
    const seat = state.byId.get(Number(b.dataset.seat));
    if (seat) tabStops.set(seat.sectionIndex, seat.seat_id);
  }
  state.buttons = new Map();
  const blocks = state.layout.sections.map((section, index) => {
    const block = document.createElement('section');
    block.className = 'section';
    block.setAttribute('aria-labelledby', `section-${index}-name`);
    const head = document.createElement('h4');
    head.className = 'section-head';
    const name = document.createElement('span');
    name.id = `section-${index}-name`;
    name.className = 'section-name';
    name.textContent = section.name;
    const price = document.createElement('span');
    price.className = 'section-price';
    price.textContent = t('map.price', { price: section.price });
    const count = document.createElement('span');
    count.className = 'section-count';
    count.id = `section-${index}-count`;
    head.append(name, ' ', price, ' ', count);
    const grid = document.createElement('div');
    grid.className = 'rows';
    grid.setAttribute('role', 'group');
    grid.setAttribute('aria-label', t('map.seats_of', { section: section.name }));
    grid.dataset.section = index;
    const seats = state.layout.seats.filter((s) => s.sectionIndex === index);
    const stop = tabStops.get(index) ?? (seats.find((s) => seatStatus(s.seat_id) === 'available') ?? seats[0])?.seat_id;
    let rowEl = null;
    let rowName = null;
    for (const seat of seats) {
      if (seat.row !== rowName) {
        rowName = seat.row;
        rowEl = document.createElement('div');
        rowEl.className = 'row';
        const label = document.createElement('span');
        label.className = 'row-label';
        label.setAttribute('aria-hidden', 'true');
        label.textContent = seat.row;
        label.title = t('map.row', { row: seat.row });
        rowEl.append(label);
        grid.append(rowEl);
      }
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'seat';
      b.dataset.seat = seat.seat_id;
      b.tabIndex = seat.seat_id === stop ? 0 : -1;
      b.textContent = seat.number;
      paintSeat(b, seat);
      state.buttons.set(seat.seat_id, b);
      rowEl.append(b);
    }
    block.append(head, grid);
    return block;
  });
  map.replaceChildren(...blocks);
  state.layout.sections.forEach((_, i) => renderSectionCount(i));
  if (focused) state.buttons.get(focused)?.focus();
}

$('seat-map').addEventListener('click', (e) => {
  const b = e.target.closest('button.seat');
  if (!b) return;
  moveStop(b);
  const seat = state.byId.get(Number(b.dataset.seat));
  if (b.getAttribute('aria-disabled') === 'true') {
    if (seatStatus(seat.seat_id) === 'available') say({ code: 'hold_limit' });
    return;
  }
  if (isMine(seat.seat_id)) releaseSeat(seat.seat_id);
  else holdSeat(seat);
});

/** Makes `b` its section's tab stop. */
function moveStop(b) {
  const grid = b.closest('.rows');
  for (const other of grid.querySelectorAll('button.seat[tabindex="0"]')) other.tabIndex = -1;
  b.tabIndex = 0;
}

// Arrow keys inside a section: left/right along the row, up/down to the
// same place in the row before or after, Home/End to the row's ends.
$('seat-map').addEventListener('keydown', (e) => {
  const b = e.target.closest('button.seat');
  if (!b) return;
  const row = b.parentElement;
  const inRow = [...row.querySelectorAll('button.seat')];
  const at = inRow.indexOf(b);
  let next = null;
  if (e.key === 'ArrowRight') next = inRow[at + 1];
  else if (e.key === 'ArrowLeft') next = inRow[at - 1];
  else if (e.key === 'Home') next = inRow[0];
  else if (e.key === 'End') next = inRow[inRow.length - 1];
  else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    const other = e.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
    if (other) {
      const seats = [...other.querySelectorAll('button.seat')];
      next = seats[Math.min(at, seats.length - 1)];
    }
  } else {
    return;
  }
  e.preventDefault();
  if (next) {
    moveStop(next);
    next.focus();
  }
});

async function holdSeat(seat) {
  clearError();
  try {
    const r = await call('POST', `/v1/shows/${state.show.id}/reservations`, {
      body: { seat_id: seat.seat_id },
      headers: { 'x-access-token': state.access },
    });
    // One Idempotency-Key per hold, for every retry of its payment.
    state.holds.push({ ...r, key: crypto.randomUUID() });
    announce(t('checkout.announce_held', { seat: seatName(seat) }));
    afterHoldsChanged();
  } catch (e) {
    say(e);
  }
}

async function releaseSeat(id) {
  clearError();
  const hold = state.holds.find((h) => h.seat_id === id);
  if (!hold) return;
  try {
    await call('DELETE', `/v1/reservations/${hold.reservation_id}`);
  } catch (e) {
    say(e);
  }
  state.holds = state.holds.filter((h) => h !== hold);
  announce(t('checkout.announce_released', { seat: seatName(state.byId.get(id)) }));
  afterHoldsChanged();
}

/** Holding changes which seats can still be chosen (the limit) and the checkout. */
function afterHoldsChanged() {
  state.layout.seats.forEach((s) => repaint(s.seat_id));
  renderHold();
}

async function refreshBalance() {
  const { balance } = await call('GET', '/v1/points');
  state.balance = balance;
  renderHold();
}

/** The checkout: every seat held, the total, the balance, and one payment for all. */
function renderHold() {
  const holds = state.holds;
  $('hold').hidden = holds.length === 0;
  if (holds.length === 0) return;
  const total = holds.reduce((sum, h) => sum + h.price, 0);
  $('hold-list').replaceChildren(...holds.map((h) => {
    const seat = state.byId.get(h.seat_id);
    const li = document.createElement('li');
    li.append(t('checkout.seat', { seat: seatName(seat), price: h.price }), ' ');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary small';
    b.textContent = t('checkout.release');
    b.setAttribute('aria-label', t('checkout.release_label', { seat: seatName(seat) }));
    b.addEventListener('click', () => releaseSeat(h.seat_id));
    li.append(b);
    return li;
  }));
  $('hold-total').textContent = t('checkout.total', { count: holds.length, total });
  $('balance-line').textContent = t('checkout.balance', { balance: state.balance ?? 0 });
  const short = Math.max(0, total - (state.balance ?? 0));
  $('short').hidden = short === 0;
  $('short').textContent = t('checkout.short', { count: short });
  $('charge').hidden = short === 0;
  $('charge').textContent = t('checkout.charge', { count: short });
  $('pay').disabled = short > 0 || state.paying === true;
  $('pay').textContent = state.paying ? t('checkout.paying') : t('checkout.pay', { count: holds.length, total });
  renderHoldLeft();
}

function renderHoldLeft() {
  if (state.holds.length === 0) return;
  const first = Math.min(...state.holds.map((h) => new Date(h.hold_expires_at).getTime()));
  $('hold-left').textContent = t('checkout.hold_left', { time: mmss(secondsLeft(first)) });
}

$('charge').addEventListener('click', async () => {
  clearError();
  try {
    const total = state.holds.reduce((sum, h) => sum + h.price, 0);
    const short = Math.max(1, total - (state.balance ?? 0));
    const { balance } = await call('POST', '/v1/points/charge', { body: { amount: short } });
    state.balance = balance;
    renderHold();
    $('pay').focus();
  } catch (e) {
    say(e);
  }
});

/**
 * Pays for every seat held, one payment per hold (each with its own
 * Idempotency-Key, so a retry never pays twice). The turn lasts until the
 * last one is paid; a hold that fails stays on screen with the reason.
 */
$('pay').addEventListener('click', async () => {
  clearError();
  state.paying = true;
  renderHold();
  for (const h of [...state.holds]) {
    try {
      const p = await call('POST', '/v1/payments', {
        body: { reservation_id: h.reservation_id },
        headers: { 'x-access-token': state.access, 'idempotency-key': h.key },
      });
      state.paid.push({ seat_id: h.seat_id, price: p.amount, payment_id: p.payment_id });
      state.balance = p.balance;
      state.holds = state.holds.filter((x) => x !== h);
    } catch (e) {
      say(e);
      if (e.code === 'insufficient_points') await refreshBalance().catch(() => {});
      if (['hold_expired', 'reservation_not_yours', 'already_paid'].includes(e.code)) {
        state.holds = state.holds.filter((x) => x !== h);
      }
      break;
    }
  }
  state.paying = false;
  if (state.holds.length === 0 && state.paid.length > 0) {
    stopTimers();
    renderReceipt();
    showView('done-view');
    return;
  }
  afterHoldsChanged();
});

function renderReceipt() {
  const total = state.paid.reduce((sum, p) => sum + p.price, 0);
  $('receipt').textContent = t('done.receipt', { count: state.paid.length, total, balance: state.balance ?? 0 });
  $('receipt-seats').replaceChildren(...state.paid.map((p) => {
    const li = document.createElement('li');
    li.textContent = t('done.seat', { seat: seatName(state.byId.get(p.seat_id)), payment: p.payment_id });
    return li;
  }));
}

// ---------------------------------------------------------------- start

(async function start() {
  const lang = preferredLanguage();
  $('lang').value = lang;
  await setLanguage(lang);
  renderConnection();
  if (!state.token) return;
  try {
    const saved = store.getItem('anteroom.show');
    if (saved && store.getItem(`anteroom.ticket.${JSON.parse(saved).id}`)) {
      $('who').textContent = t('who', { name: state.name });
      $('who').hidden = false;
      enterLine(JSON.parse(saved));
    } else {
      await listShows();
    }
  } catch (e) {
    if (e.status === 401) {
      signedOut(e);
      return;
    }
    say(e);
  }
})();
