// The waiting room page: sign in → shows → line → seats → pay → confirmation.
// All queue traffic goes through ./anteroom.js; this file only renders.

import { api, join } from './anteroom.js';

const $ = (id) => document.getElementById(id);
const VIEWS = ['signin-view', 'shows-view', 'waiting-view', 'buy-view', 'done-view', 'ended-view'];
const base = location.href;
const store = sessionStorage;

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
  show: null, // {id, title}
  client: null,
  access: null, // access token while active
  activeUntil: null,
  firstRank: null,
  lastAnnounced: null,
  hold: null, // {reservation_id, seat_id, price, hold_expires_at, label}
  payKey: null, // the Idempotency-Key of the payment being attempted
  timers: [],
  phase: null, // 'prequeue' | 'ranked' while in line
  paused: false,
  startsAt: null, // the opening of a pre-queued fan's sale
  countdown: null,
  // The seat map: the show's layout, every seat's status at `seatVersion`
  // (availability + the `seats` deltas on top), and deltas that came
  // before the availability read answered.
  layout: null, // {show_id, digest, seats: [{seat_id, label, section, price}], sections}
  statuses: new Map(), // seat_id → 'available' | 'held' | 'sold'
  seatVersion: null,
  earlyDeltas: [],
  transport: null,
};

/** Words a fan understands, by the gateway's error code. */
const MESSAGES = {
  network: 'We cannot reach the box office right now. Check your connection; we keep trying.',
  seat_taken: 'Someone was quicker: that seat is taken. Please pick another one.',
  hold_limit: 'You are holding as many seats as you may. Pay for them or let one go first.',
  hold_expired: 'Your hold on that seat ran out. Pick a seat again.',
  insufficient_points: 'You do not have enough points for this seat yet. Add points, then pay.',
  session_not_active: 'Your turn has ended, so you cannot buy any more. Join the line again.',
  access_token_expired: 'Your turn has ended, so you cannot buy any more. Join the line again.',
  reservation_not_yours: 'That hold is not yours any more. Pick a seat again.',
  already_paid: 'That seat is already paid for.',
  ticket_expired: 'Your place in line has expired. Please join again.',
  invalid_ticket: 'Your place in line is no longer valid. Please join again.',
  invalid_username: 'Names may use letters, digits, "_", "-" and "." (up to 32).',
  demo_sign_in_disabled: 'Sign in at the ticket shop to join the line.',
  token_expired: 'You have been signed out. Please sign in again.',
  invalid_token: 'You have been signed out. Please sign in again.',
  show_not_found: 'That show is no longer on sale.',
  challenge_failed: 'We could not check your browser. Please try joining again.',
  challenge_unsupported: 'This browser cannot join this show from here. Please use an up-to-date browser over https.',
  unavailable: 'The box office is very busy. Please try again in a moment.',
  sold_out: 'This show is sold out.',
  show_closed: 'The sale for this show has closed.',
  not_open_yet: 'The line for this show is not open yet.',
};

/**
 * How a place in line can end, by the `closed` reason (pushed, polled, or a
 * join refused with the same code): the heading, the words, and whether
 * joining again can help.
 */
const ENDINGS = {
  left: { title: 'You left the line', why: 'You left the line.', rejoin: true },
  abandoned: {
    title: 'Your place was given up',
    why: 'We lost touch with you for too long, so your place was given up.',
    rejoin: true,
  },
  sold_out: {
    title: 'Sold out',
    why: 'Every seat for this show has been sold, so the line has closed. Thank you for waiting.',
    rejoin: false,
  },
  show_closed: {
    title: 'The sale has closed',
    why: 'The box office has closed the sale for this show, so the line has closed.',
    rejoin: false,
  },
  removed: {
    title: 'You were removed from the line',
    why: 'The box office removed your place in line. If you think this is a mistake, please contact them.',
    rejoin: false,
  },
};

function say(e) {
  const text = MESSAGES[e.code] ?? e.message ?? 'Something went wrong. Please try again.';
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

function showView(id) {
  for (const v of VIEWS) $(v).hidden = v !== id;
  const heading = $(id).querySelector('h2');
  heading?.setAttribute('tabindex', '-1');
  heading?.focus();
}

function call(method, path, opts = {}) {
  return api(base, method, path, { token: state.token, ...opts });
}

function every(ms, fn) {
  fn();
  const t = setInterval(fn, ms);
  state.timers.push(t);
  return t;
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
  const clock = h > 0 || days > 0 ? `${h}:${rest.padStart(5, '0')}` : rest;
  return days > 0 ? `${days} day${days === 1 ? '' : 's'} ${clock}` : clock;
}

/** A moment in the fan's own words: `at 10:00` today, else with the date. */
function when(iso) {
  const at = new Date(iso);
  const today = at.toDateString() === new Date().toDateString();
  const time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (today) return `at ${time}`;
  return `on ${at.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' })} at ${time}`;
}

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

async function listShows() {
  $('who').textContent = `Signed in as ${state.name}`;
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
    size.textContent = (s.queue.prequeued ? `${s.queue.prequeued} in the pre-queue · ` : '') +
      `${s.queue.waiting} waiting · ${s.queue.active} of ${s.queue.capacity} buying now`;
    li.append(title, sale, size);
    // A show that is over has nothing to join; every other state lets the
    // fan try (a scheduled show answers with its opening time).
    if (s.state !== 'sold_out' && s.state !== 'closed') {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = 'Join the line';
      b.setAttribute('aria-label', `Join the line for ${s.title}`);
      b.addEventListener('click', () => enterLine({ id: s.id, title: s.title }));
      li.append(b);
    }
    return li;
  }));
  showView('shows-view');
}

/** A show's state in words, for the list. */
function saleState(s) {
  switch (s.state) {
    case 'scheduled':
      return s.prequeue_opens_at ? `The line opens ${when(s.prequeue_opens_at)}.` : 'The line is not open yet.';
    case 'prequeue':
      return s.starts_at ? `Pre-queue open: the sale starts ${when(s.starts_at)}.` : 'Pre-queue open.';
    case 'paused':
      return 'On sale, paused for now.';
    case 'sold_out':
      return 'Sold out.';
    case 'closed':
      return 'The sale has closed.';
    default:
      return 'On sale now.';
  }
}

// ---------------------------------------------------------------- the line

function enterLine(show) {
  clearError();
  stopTimers();
  state.client?.stop();
  state.show = show;
  store.setItem('anteroom.show', JSON.stringify(show));
  state.firstRank = null;
  state.lastAnnounced = null;
  state.access = null;
  state.hold = null;
  state.startsAt = null;
  setPaused(false);
  setPhase('ranked');
  document.querySelectorAll('[data-show-title]').forEach((n) => { n.textContent = show.title; });
  $('rank').textContent = '…';
  $('ahead').textContent = 'Finding your place…';
  $('eta').textContent = '';
  $('notice').hidden = true;
  showView('waiting-view');

  const client = join(show.id, { token: state.token, baseUrl: base });
  state.client = client;
  client.addEventListener('prequeue', (e) => onPrequeue(e.detail));
  client.addEventListener('rank', (e) => onRank(e.detail));
  client.addEventListener('paused', (e) => onPaused(e.detail));
  client.addEventListener('notice', (e) => onNotice(e.detail));
  client.addEventListener('active', (e) => onActive(e.detail));
  client.addEventListener('seats', (e) => onSeats(e.detail));
  client.addEventListener('transport', (e) => { state.transport = e.detail.transport; });
  client.addEventListener('expiring', (e) => onExpiring(e.detail));
  client.addEventListener('expired', () => onEnded('Your time to buy ran out. You can join the line again.'));
  client.addEventListener('closed', (e) => onClosed(e.detail));
  client.addEventListener('connection', (e) => onConnection(e.detail.state));
  client.addEventListener('challenge', (e) => {
    if (e.detail.state === 'solving') $('ahead').textContent = 'Checking your browser…';
  });
  client.addEventListener('transport', (e) => { $('connection').dataset.transport = e.detail.transport; onConnection(client.connectionState); });
  client.addEventListener('error', (e) => {
    const { code, status } = e.detail;
    if (ENDINGS[code]) {
      onClosed({ reason: code });
    } else if (code === 'not_open_yet') {
      notOpenYet();
    } else {
      say(e.detail);
      if (status === 401 || status === 404) onEnded(MESSAGES[code] ?? e.detail.message);
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
  $('waiting-title').textContent = phase === 'prequeue' ? "You're in the pre-queue" : "You're in line";
}

function setPaused(paused) {
  state.paused = paused;
  $('waiting-view').dataset.paused = String(paused);
  $('paused').hidden = !paused;
}

function announce(text) {
  $('announce').textContent = text;
}

function onPrequeue({ starts_at: startsAt }) {
  const moved = state.phase !== 'prequeue' || state.startsAt !== startsAt;
  state.startsAt = startsAt;
  setPhase('prequeue');
  const time = $('countdown');
  time.dateTime = startsAt;
  $('opens-at').textContent = `The sale opens ${when(startsAt)}.`;
  const tick = () => {
    const left = secondsLeft(startsAt);
    // The device's clock may be a little off: at zero the page waits for the
    // gateway's first rank, which is what opens the sale.
    time.textContent = left > 0 ? countdownText(left) : 'opening now…';
  };
  tick();
  clearInterval(state.countdown);
  state.countdown = setInterval(tick, 1000);
  if (moved) {
    announce(`You are in the pre-queue. The sale opens ${when(startsAt)}; then everyone in the ` +
      'pre-queue gets a place in line drawn at random.');
  }
}

/** The fan's place, from a rank frame or a paused status. */
function showPlace(rank, ahead) {
  if (state.firstRank === null || rank > state.firstRank) state.firstRank = rank;
  $('rank').textContent = rank;
  $('ahead').textContent = ahead === 0 ? 'You are next!' : ahead === 1 ? '1 person is ahead of you.' : `${ahead} people are ahead of you.`;
  const progress = $('progress');
  progress.max = state.firstRank;
  progress.value = state.firstRank - rank + 1;
}


function onConnection(s) {
  const el = $('connection');
  el.dataset.state = s ?? 'idle';
  const via = { ws: 'live (WebSocket)', sse: 'live (event stream)', poll: 'checking regularly' }[el.dataset.transport] ?? '';
  el.textContent = s === 'connected' ? `connected, ${via}` : s === 'reconnecting' ? 'reconnecting…' : s === 'offline' ? 'offline — waiting for the network' : 'not connected';
}

function onRank({ rank, ahead, eta_seconds: eta }) {
  const opened = state.phase === 'prequeue';
  const resumed = state.paused;
  setPhase('ranked');
  setPaused(false);
  showPlace(rank, ahead);
  $('eta').textContent = eta == null ? '' : eta < 60 ? 'Estimated wait: under a minute.' : `Estimated wait: about ${Math.round(eta / 60)} min.`;
  // Announce politely, and not every tick: on the first rank, on the
  // opening and a resumption, and then when it has moved by a tenth (or
  // reached the last ten).
  const last = state.lastAnnounced;
  if (opened || resumed || last === null || rank <= 10 || last - rank >= Math.max(1, Math.ceil(last / 10))) {
    state.lastAnnounced = rank;
    const why = opened ? 'The sale has opened. ' : resumed ? 'The sale has resumed. ' : '';
    announce(`${why}You are number ${rank} in line.`);
  }
}

function onPaused({ rank, ahead }) {
  const news = !state.paused;
  setPaused(true);
  if (rank != null) {
    if (state.phase === 'prequeue') setPhase('ranked');
    showPlace(rank, ahead);
  }
  // No estimate while nobody is admitted.
  $('eta').textContent = '';
  if (news) {
    const place = state.phase === 'ranked' && $('rank').textContent !== '…' ? ` You are still number ${$('rank').textContent}.` : '';
    announce(`The sale is paused. You keep your place in line.${place}`);
  }
}

function onNotice({ code }) {
  if (code !== 'all_seats_held') return; // a notice this page does not know yet
  const box = $('notice');
  box.textContent = 'Every seat left is held by fans buying right now. Seats they do not pay for ' +
    'go back on sale, so keep your place.';
  box.hidden = false;
  announce(box.textContent);
}

/** A join refused because the line has not opened: say when it opens, if the show says. */
async function notOpenYet() {
  const ending = { title: 'Not open yet', rejoin: true, rejoinLabel: 'Try again' };
  let show = null;
  try {
    show = (await call('GET', '/v1/shows')).find((s) => s.id === state.show.id) ?? null;
  } catch {
    // The plain sentence below still holds.
  }
  const opens = show?.prequeue_opens_at ?? show?.starts_at;
  let why = opens ? `The line for this show opens ${when(opens)}.` : 'The line for this show is not open yet. Please come back later.';
  if (show?.prequeue_opens_at && show?.starts_at) why += ` The sale starts ${when(show.starts_at)}.`;
  onEnded(why, ending);
}

function onActive({ access_token: access, active_until: until }) {
  stopCountdown();
  state.access = access;
  state.activeUntil = until;
  store.setItem('anteroom.access', access);
  showView('buy-view');
  $('announce').textContent = 'It is your turn. Choose a seat.';
  every(1000, () => {
    $('session-left').textContent = `Your turn lasts ${mmss(secondsLeft(until))} more.`;
    if (state.hold) $('hold-left').textContent = mmss(secondsLeft(state.hold.hold_expires_at));
    if (state.hold && secondsLeft(state.hold.hold_expires_at) === 0) {
      state.hold = null;
      renderHold();
      say({ code: 'hold_expired' });
    }
  });
  // Changes come as `seats` messages; only REST polling (no push) reads
  // the availability again now and then.
  state.seatVersion = null;
  loadSeats().catch(say);
  const poll = setInterval(() => {
    if (state.transport === 'poll') loadSeats().catch(say);
  }, 3000);
  state.timers.push(poll);
  refreshBalance();
}

function onExpiring({ seconds_left: s }) {
  const box = $('expiring');
  box.textContent = `Hurry: your turn ends in ${s} seconds.`;
  box.hidden = false;
}

function onClosed({ reason }) {
  if (reason === 'completed') return; // the receipt is already on screen
  const ending = ENDINGS[reason] ?? { title: 'Your place in line has ended', why: 'Your place in line has ended.', rejoin: true };
  onEnded(ending.why, ending);
}

/**
 * The place ended. `ending`: the heading, and whether to offer joining again
 * (pointless once the show is sold out or closed).
 */
function onEnded(why, ending = {}) {
  stopTimers();
  state.client?.stop();
  if (!$('done-view').hidden) return;
  $('ended-title').textContent = ending.title ?? 'Your turn has ended';
  $('ended-why').textContent = why;
  $('rejoin').hidden = ending.rejoin === false;
  $('rejoin').textContent = ending.rejoinLabel ?? 'Join the line again';
  showView('ended-view');
}

$('leave').addEventListener('click', async () => {
  await state.client?.leave();
  stopTimers();
  await listShows();
});

$('rejoin').addEventListener('click', () => enterLine(state.show));
$('again').addEventListener('click', () => { stopTimers(); listShows().catch(say); });
$('ended-shows').addEventListener('click', () => { clearError(); listShows().catch(say); });

// ---------------------------------------------------------------- seats

const STATUS_CODES = ['available', 'held', 'sold'];

/** The show's layout (the browser revalidates it by its ETag). */
async function loadLayout() {
  const layout = await call('GET', `/v1/shows/${state.show.id}/layout`);
  const seats = layout.sections.flatMap((section) => section.rows.flatMap((row) =>
    row.seats.map((seat) => ({ ...seat, section: section.name, price: section.price }))));
  state.layout = { show_id: layout.show_id, digest: null, seats, sections: layout.sections };
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
  for (const { seat_id: id, status } of delta.changes) {
    state.statuses.set(id, status);
    const b = $('seat-map').querySelector(`[data-seat="${id}"]`);
    if (b) paintSeat(b, state.layout.seats.find((s) => s.seat_id === id));
  }
}

function paintSeat(b, seat) {
  const status = state.statuses.get(seat.seat_id) ?? 'sold';
  b.dataset.status = status;
  const mine = state.hold?.seat_id === seat.seat_id;
  b.setAttribute('aria-label', `${seat.label}, ${seat.price} points, ${mine ? 'held by you' : status}`);
  b.disabled = status !== 'available' || !!state.hold;
}

function drawSeats() {
  const map = $('seat-map');
  const focused = document.activeElement?.dataset?.seat;
  map.replaceChildren(...state.layout.seats.map((s) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'seat';
    b.dataset.seat = s.seat_id;
    b.textContent = s.label.replace(`${s.section} `, '');
    paintSeat(b, s);
    b.addEventListener('click', () => holdSeat(s));
    return b;
  }));
  if (focused) map.querySelector(`[data-seat="${focused}"]`)?.focus();
}

async function holdSeat(seat) {
  clearError();
  try {
    const r = await call('POST', `/v1/shows/${state.show.id}/reservations`, {
      body: { seat_id: seat.seat_id },
      headers: { 'x-access-token': state.access },
    });
    state.hold = { ...r, label: seat.label };
    state.payKey = crypto.randomUUID();
    renderHold();
    // The seat's own change comes as a `seats` message; the rest of the
    // map is now closed to a second hold.
    drawSeats();
    $('pay').focus();
  } catch (e) {
    say(e);
    drawSeats();
  }
}

async function refreshBalance() {
  const { balance } = await call('GET', '/v1/points');
  state.balance = balance;
  renderHold();
}

function renderHold() {
  const h = state.hold;
  $('hold').hidden = !h;
  if (!h) return;
  $('hold-seat').textContent = h.label;
  $('hold-price').textContent = h.price;
  $('hold-left').textContent = mmss(secondsLeft(h.hold_expires_at));
  $('balance').textContent = state.balance ?? 0;
  const short = Math.max(0, h.price - (state.balance ?? 0));
  $('short').hidden = short === 0;
  $('short').textContent = `You need ${short} more points.`;
  $('charge').hidden = short === 0;
  $('charge').textContent = `Add ${short} points`;
  $('pay').disabled = short > 0;
}

$('charge').addEventListener('click', async () => {
  clearError();
  try {
    const short = Math.max(1, state.hold.price - (state.balance ?? 0));
    const { balance } = await call('POST', '/v1/points/charge', { body: { amount: short } });
    state.balance = balance;
    renderHold();
    $('pay').focus();
  } catch (e) {
    say(e);
  }
});

$('pay').addEventListener('click', async () => {
  clearError();
  const h = state.hold;
  $('pay').disabled = true;
  try {
    // The same key for every retry of this payment: a double click or a
    // retry after a network error never pays twice.
    const p = await call('POST', '/v1/payments', {
      body: { reservation_id: h.reservation_id },
      headers: { 'x-access-token': state.access, 'idempotency-key': state.payKey },
    });
    stopTimers();
    $('receipt').textContent = `Seat ${h.label} is yours. Payment #${p.payment_id}: ${p.amount} points; ` +
      `${p.balance} points left.`;
    state.hold = null;
    showView('done-view');
  } catch (e) {
    say(e);
    if (e.code === 'insufficient_points') await refreshBalance();
    if (e.code === 'hold_expired' || e.code === 'reservation_not_yours') {
      state.hold = null;
      renderHold();
      drawSeats();
    }
    $('pay').disabled = false;
  }
});

$('release').addEventListener('click', async () => {
  clearError();
  try {
    await call('DELETE', `/v1/reservations/${state.hold.reservation_id}`);
  } catch (e) {
    say(e);
  }
  state.hold = null;
  renderHold();
  drawSeats();
});

// ---------------------------------------------------------------- start

(async function resume() {
  if (!state.token) return;
  try {
    const saved = store.getItem('anteroom.show');
    if (saved && store.getItem(`anteroom.ticket.${JSON.parse(saved).id}`)) {
      $('who').textContent = `Signed in as ${state.name}`;
      $('who').hidden = false;
      enterLine(JSON.parse(saved));
    } else {
      await listShows();
    }
  } catch (e) {
    if (e.status === 401) {
      store.removeItem('anteroom.token');
      state.token = null;
      showView('signin-view');
    }
    say(e);
  }
})();
