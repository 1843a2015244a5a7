// anteroom.js — the browser client of the anteroom waiting room.
//
// An ES module with no dependencies. `join(showId, options)` returns a
// QueueClient that keeps the fan's place and emits what the gateway pushes:
//
//   prequeue    {starts_at}                  in the pre-queue: no place yet; at
//                                            `starts_at` places are drawn at random
//   rank        {rank, ahead, eta_seconds}   the fan's place moved (the first one
//                                            after `prequeue` or `paused`: the sale
//                                            opened, or resumed; a pushed rank with
//                                            `paused: true` comes as `paused`)
//   paused      {rank?, ahead?}              the sale is paused; the place is kept
//                                            (rank and ahead come with a polled status,
//                                            or a place that moved while paused)
//   notice      {code, text?}                news: `all_seats_held` (while waiting), or
//                                            `operator` with the operator's `text`
//                                            (`''`: the notice was cleared)
//   active      {access_token, active_until} admitted: buy now
//   expiring    {seconds_left}               the session ends soon
//   expired     {}                           the session ran out
//   closed      {reason}                     the place ended (left, abandoned, completed,
//                                            sold_out, show_closed, removed)
//   transport   {transport: 'ws'|'sse'|'poll'}
//   connection  {state, retry_at?}           'connected', 'reconnecting' (with
//                                            `retry_at`, epoch ms of the next try),
//                                            'offline', or 'stopped' (the client no
//                                            longer follows the place)
//   challenge   {state: 'solving', maxnumber} | {state: 'solved', took_ms}
//                                            the show asks for proof of work on join
//   error       {code, message, status}      the place is lost (401 ticket refused, 404
//                                            show or spot gone: the client stops), or
//                                            the join was refused (409 sold_out,
//                                            show_closed, not_open_yet)
//
// Transports: WebSocket first; Server-Sent Events if WebSockets never get
// through; REST polling (honouring `poll_after_ms`; a pre-queued fan polls
// again just after the opening) if neither does. A
// transport that worked once is retried after a drop (a gateway restart),
// with jittered exponential backoff, and the fan resumes with the same ticket,
// keeping the place. Before each retry the client asks the status endpoint:
// a place that is gone (a `closed` status, a ticket refused with 401, a show
// or spot the gateway no longer knows, 404) ends the loop at once instead of
// retrying a socket that can never open. The ticket is kept in
// sessionStorage, so a page reload resumes too.
//
// Proof of work: a show may ask each join to carry a solved ALTCHA challenge
// (`challenge_cost`). The client then fetches one, solves it in Web Workers
// and joins with `X-Altcha`, without asking the fan for anything; see
// `solveChallenge`.

const STORAGE_PREFIX = 'anteroom.ticket.';
const BACKOFF_START_MS = 500;
/// Short enough that a fan whose gateway comes back learns within a few
/// seconds whether the place is still there (never stuck), long enough
/// (with jitter) that a restarted gateway's fans return over seconds.
const BACKOFF_MAX_MS = 5_000;
/// Attempts that never connected before giving up on a transport.
const FAILURES_BEFORE_FALLBACK = 2;
const TERMINAL = new Set(['expired', 'closed']);
/// Joins tried with a fresh solution after one is refused (it may have
/// expired during a slow solve).
const CHALLENGE_ATTEMPTS = 2;
/// Polling pre-queued fans come back within this long after the opening.
const OPENING_SPREAD_MS = 1000;
const MIN_POLL_MS = 200;
/// A status check that takes longer counts as the gateway unreachable.
const STATUS_TIMEOUT_MS = 5000;

/**
 * An API error with the gateway's machine-readable code.
 */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0 when the gateway was unreachable)
   * @param {string} code e.g. `seat_taken`, `network`
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the gateway's JSON API.
 * @param {string} baseUrl
 * @param {string} method
 * @param {string} path
 * @param {{token?: string, body?: unknown, headers?: Record<string,string>, signal?: AbortSignal}} [opts]
 * @returns {Promise<any>} the parsed body (null for 204)
 */
export async function api(baseUrl, method, path, opts = {}) {
  const headers = { ...(opts.headers ?? {}) };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let res;
  try {
    res = await fetch(new URL(path, baseUrl), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'The box office cannot be reached. Check your connection.');
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    throw new ApiError(res.status, data?.error?.code ?? 'http_' + res.status,
      data?.error?.message ?? res.statusText);
  }
  return data;
}

/**
 * Finds the number n in start..=end whose SHA-256(salt + n) is `challenge`
 * (hex), or null. SHA-256 is computed here rather than with SubtleCrypto:
 * one promise per digest made SubtleCrypto 7–8 times slower on these short
 * inputs (docs/benchmarks.md, "Proof of work"). Self-contained, because it is also the body
 * of the Web Workers; `pause` (on the page only) yields now and then so the
 * page stays responsive, and returns true to stop.
 * @returns {Promise<number|null>}
 */
async function searchChallenge(salt, challenge, start, end, pause) {
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const INIT = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const target = new Int32Array(8);
  for (let i = 0; i < 8; i += 1) target[i] = parseInt(challenge.slice(i * 8, i * 8 + 8), 16) | 0;
  const prefix = new TextEncoder().encode(salt);
  // Room for the salt, the longest number (16 digits) and the padding.
  const msg = new Uint8Array(Math.ceil((prefix.length + 25) / 64) * 64);
  msg.set(prefix);
  const w = new Int32Array(64);
  const h = new Int32Array(8);
  const digest = (len) => {
    const total = Math.ceil((len + 9) / 64) * 64;
    msg[len] = 0x80;
    msg.fill(0, len + 1, total - 4);
    const bits = len * 8;
    msg[total - 4] = bits >>> 24;
    msg[total - 3] = bits >>> 16;
    msg[total - 2] = bits >>> 8;
    msg[total - 1] = bits;
    h.set(INIT);
    for (let off = 0; off < total; off += 64) {
      for (let i = 0; i < 16; i += 1) {
        const j = off + i * 4;
        w[i] = (msg[j] << 24) | (msg[j + 1] << 16) | (msg[j + 2] << 8) | msg[j + 3];
      }
      for (let i = 16; i < 64; i += 1) {
        const x = w[i - 15];
        const y = w[i - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
      }
      let a = h[0];
      let b = h[1];
      let c = h[2];
      let d = h[3];
      let e = h[4];
      let f = h[5];
      let g = h[6];
      let k = h[7];
      for (let i = 0; i < 64; i += 1) {
        const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const t1 = (k + s1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
    }
    return h;
  };
  for (let n = start; n <= end; n += 1) {
    const digits = String(n);
    let len = prefix.length;
    for (let i = 0; i < digits.length; i += 1) msg[len++] = digits.charCodeAt(i);
    const got = digest(len);
    if (got[0] === target[0] && got.every((word, i) => word === target[i])) return n;
    if (pause && n % 16384 === 0 && await pause()) return null;
  }
  return null;
}

const WORKER_SOURCE = `${searchChallenge.toString()}
self.onmessage = async ({ data: d }) => {
  self.postMessage(await searchChallenge(d.salt, d.challenge, d.start, d.end, null));
};`;

/**
 * Solves an ALTCHA challenge (`GET /v1/shows/{id}/challenge`) and returns
 * the `X-Altcha` value: base64 of `{algorithm, challenge, number, salt,
 * signature}`. The range 0..=maxnumber is split between Web Workers (one per
 * core, at most 8); where workers cannot start (a Content-Security-Policy
 * without `worker-src blob:`) it runs on the page, in slices.
 * @param {{algorithm: string, challenge: string, salt: string, signature: string, maxnumber: number}} challenge
 * @param {{signal?: AbortSignal, workers?: number}} [opts] `workers`: how
 *   many (default: one per core); 0 solves on the page.
 * @returns {Promise<string>}
 */
export async function solveChallenge(challenge, opts = {}) {
  if (challenge.algorithm !== 'SHA-256') {
    throw new ApiError(0, 'challenge_unsupported', `Unknown challenge algorithm ${challenge.algorithm}.`);
  }
  const max = challenge.maxnumber;
  const signal = opts.signal;
  const wanted = Math.min(opts.workers ?? globalThis.navigator?.hardwareConcurrency ?? 2, 8, max + 1);
  let number = wanted > 0 ? await inWorkers(challenge, wanted, signal) : undefined;
  if (number === undefined) {
    const pause = () => new Promise((resolve) => setTimeout(() => resolve(signal?.aborted ?? false), 0));
    number = await searchChallenge(challenge.salt, challenge.challenge, 0, max, pause);
  }
  if (signal?.aborted) throw new DOMException('The client stopped.', 'AbortError');
  if (number === null) throw new ApiError(0, 'challenge_failed', 'The challenge has no solution.');
  const { algorithm, challenge: hash, salt, signature } = challenge;
  return btoa(JSON.stringify({ algorithm, challenge: hash, number, salt, signature }));
}

/**
 * Splits 0..=maxnumber between `count` workers. Resolves to the number, null
 * (none, or stopped), or undefined if workers cannot run here (refused by a
 * Content-Security-Policy, at once or with an error event).
 */
async function inWorkers(challenge, count, signal) {
  const workers = [];
  let url;
  try {
    url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
    for (let i = 0; i < count; i += 1) workers.push(new Worker(url));
  } catch {
    workers.forEach((w) => w.terminate());
    if (url) URL.revokeObjectURL(url);
    return undefined;
  }
  const share = Math.ceil((challenge.maxnumber + 1) / count);
  try {
    return await new Promise((resolve) => {
      let left = count;
      if (signal?.aborted) resolve(null);
      signal?.addEventListener('abort', () => resolve(null));
      workers.forEach((w, i) => {
        w.onmessage = (e) => {
          left -= 1;
          if (e.data !== null || left === 0) resolve(e.data);
        };
        w.onerror = () => resolve(undefined);
        w.postMessage({
          salt: challenge.salt, challenge: challenge.challenge,
          start: i * share, end: Math.min(challenge.maxnumber, (i + 1) * share - 1),
        });
      });
    });
  } finally {
    workers.forEach((w) => w.terminate());
    URL.revokeObjectURL(url);
  }
}

/**
 * How long to wait before the next status poll: what the gateway asks
 * (`poll_after_ms`), except that a pre-queued fan comes back just after the
 * opening rather than up to a whole interval later, at a random point in the
 * second after it, so the polling fans do not all arrive at the same instant.
 */
function pollDelay(status) {
  const asked = status.poll_after_ms ?? 2000;
  if (status.state !== 'prequeued' || !status.starts_at) return asked;
  const opening = Date.parse(status.starts_at) - Date.now() + Math.random() * OPENING_SPREAD_MS;
  return Math.max(MIN_POLL_MS, Math.min(asked, opening));
}

/**
 * Joins a show's queue (or resumes the place this tab already holds) and
 * starts following it.
 * @param {number} showId
 * @param {{token: string, baseUrl?: string, storage?: Storage}} options
 *   `token`: the fan's bearer token from `POST /v1/sessions`.
 * @returns {QueueClient}
 */
export function join(showId, options) {
  const client = new QueueClient(showId, options);
  client.start();
  return client;
}

/**
 * Forgets the place this tab holds for a show (after it ended).
 * @param {number} showId
 * @param {Storage} [storage]
 */
export function forget(showId, storage = globalThis.sessionStorage) {
  storage?.removeItem(STORAGE_PREFIX + showId);
}

export class QueueClient extends EventTarget {
  /**
   * @param {number} showId
   * @param {{token: string, baseUrl?: string, storage?: Storage}} options
   */
  constructor(showId, options) {
    super();
    this.showId = showId;
    this.token = options.token;
    this.baseUrl = options.baseUrl ?? globalThis.location?.href;
    this.storage = options.storage ?? globalThis.sessionStorage;
    /** @type {string|null} */
    this.ticket = this.storage?.getItem(STORAGE_PREFIX + showId) ?? null;
    /** @type {'ws'|'sse'|'poll'} */
    this.transport = 'ws';
    this.worked = { ws: false, sse: false, poll: false };
    this.failures = 0;
    this.backoff = BACKOFF_START_MS;
    this.stopped = false;
    this.stopping = new AbortController();
    this.ended = false;
    this.connectionState = null;
    /** The operator's notice as last told ('' for none). */
    this.noticeText = '';
    this.socket = null;
    this.source = null;
    this.timer = null;
    this.onOffline = () => this.setConnection('offline');
    this.onOnline = () => { if (!this.ended && !this.stopped) this.reconnectNow(); };
    globalThis.addEventListener?.('offline', this.onOffline);
    globalThis.addEventListener?.('online', this.onOnline);
  }

  /** Joins (or resumes) and connects. Errors are emitted as `error`. */
  async start() {
    try {
      if (!this.ticket) await this.joinQueue();
      this.connect();
    } catch (e) {
      if (!this.stopped) this.fail(e);
    }
  }

  /** Leaves the queue (frees the slot if active) and stops. */
  async leave() {
    const ticket = this.ticket;
    this.stop();
    forget(this.showId, this.storage);
    if (ticket) {
      await api(this.baseUrl, 'DELETE', `/v1/shows/${this.showId}/queue`,
        { headers: { 'x-queue-ticket': ticket } }).catch(() => {});
    }
  }

  /** Stops following the queue; the place is kept until the gateway's grace runs out. */
  stop() {
    this.stopped = true;
    this.stopping.abort();
    this.closeTransports();
    clearTimeout(this.timer);
    globalThis.removeEventListener?.('offline', this.onOffline);
    globalThis.removeEventListener?.('online', this.onOnline);
    this.setConnection('stopped');
  }

  async joinQueue() {
    const path = `/v1/shows/${this.showId}/queue`;
    let spot;
    try {
      spot = await api(this.baseUrl, 'POST', path, { token: this.token });
    } catch (e) {
      if (e.code !== 'challenge_required') throw e;
      spot = await this.joinWithProof(path);
    }
    if (this.stopped) return;
    this.ticket = spot.ticket;
    this.storage?.setItem(STORAGE_PREFIX + this.showId, spot.ticket);
    this.handleState(spot);
  }

  /** The show asks for proof of work: solve a fresh challenge, join with it. */
  async joinWithProof(path) {
    for (let attempt = 1; ; attempt += 1) {
      const challenge = await api(this.baseUrl, 'GET', `/v1/shows/${this.showId}/challenge`);
      this.emit('challenge', { state: 'solving', maxnumber: challenge.maxnumber });
      const started = performance.now();
      const altcha = await solveChallenge(challenge, { signal: this.stopping.signal });
      this.emit('challenge', { state: 'solved', took_ms: Math.round(performance.now() - started) });
      try {
        return await api(this.baseUrl, 'POST', path, { token: this.token, headers: { 'x-altcha': altcha } });
      } catch (e) {
        if (e.code !== 'challenge_failed' || attempt >= CHALLENGE_ATTEMPTS) throw e;
      }
    }
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** `retryAt`: when a reconnecting client tries next (epoch ms). */
  setConnection(state, retryAt) {
    if (this.connectionState === state && this.retryAt === retryAt) return;
    if (this.connectionState === 'stopped') return;
    this.connectionState = state;
    this.retryAt = retryAt;
    this.emit('connection', retryAt === undefined ? { state } : { state, retry_at: retryAt });
  }

  setTransport(transport) {
    this.transport = transport;
    this.emit('transport', { transport });
  }

  fail(e) {
    this.emit('error', { code: e.code ?? 'error', message: e.message, status: e.status ?? 0 });
  }

  /** A pushed message (or a status turned into one). */
  handleMessage(msg) {
    if (this.ended) return;
    if (msg.type === 'pong') return;
    // A place that moves while the sale is paused is not a resumption.
    if (msg.type === 'rank' && msg.paused) {
      this.emit('paused', { rank: msg.rank, ahead: msg.ahead });
      return;
    }
    if (msg.type === 'notice' && msg.code === 'operator') this.noticeText = msg.text ?? '';
    if (TERMINAL.has(msg.type)) {
      this.ended = true;
      forget(this.showId, this.storage);
      this.closeTransports();
      clearTimeout(this.timer);
    }
    this.emit(msg.type, msg);
    if (TERMINAL.has(msg.type)) this.setConnection('stopped');
  }

  /** A REST answer (join or status) turned into the pushed message it matches. */
  handleState(s) {
    if (s.state === 'prequeued') {
      this.handleMessage({ type: 'prequeue', starts_at: s.starts_at });
    } else if (s.state === 'waiting' && s.paused) {
      this.handleMessage({ type: 'paused', rank: s.rank, ahead: s.ahead });
    } else if (s.state === 'waiting') {
      this.handleMessage({ type: 'rank', rank: s.rank, ahead: s.ahead, eta_seconds: s.eta_seconds ?? null });
    } else if (s.state === 'active') {
      this.handleMessage({ type: 'active', access_token: s.access_token, active_until: s.active_until });
    } else if (s.state === 'expired') {
      this.handleMessage({ type: 'expired' });
    } else {
      this.handleMessage({ type: 'closed', reason: s.reason ?? 'closed' });
      return;
    }
    // The operator's notice rides on every answer: said when it changed.
    const notice = s.notice ?? '';
    if (notice !== this.noticeText) this.handleMessage({ type: 'notice', code: 'operator', text: notice });
  }

  url(kind) {
    const base = new URL(`/v1/shows/${this.showId}/queue/${kind}`, this.baseUrl);
    base.searchParams.set('ticket', this.ticket);
    if (kind === 'ws') base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    return base;
  }

  closeTransports() {
    if (this.socket) {
      this.socket.onclose = this.socket.onerror = this.socket.onmessage = this.socket.onopen = null;
      try { this.socket.close(1000); } catch { /* already closed */ }
      this.socket = null;
    }
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  connect() {
    if (this.stopped || this.ended) return;
    clearTimeout(this.timer);
    this.closeTransports();
    if (this.transport === 'ws') this.connectWs();
    else if (this.transport === 'sse') this.connectSse();
    else this.poll();
  }

  connected(transport) {
    this.worked[transport] = true;
    this.failures = 0;
    this.backoff = BACKOFF_START_MS;
    if (this.transport !== transport || this.connectionState !== 'connected') this.setTransport(transport);
    this.setConnection('connected');
  }

  /**
   * A push transport closed or never opened (a refused ticket looks the
   * same to a browser as a network failure): ask the status endpoint what
   * became of the place before trying again.
   */
  failed(transport) {
    if (this.stopped || this.ended) return;
    this.closeTransports();
    this.checkStatus(transport);
  }

  /**
   * A transport dropped or never connected, and the place is not known to
   * be gone: retry it with backoff, or, if it never worked here, fall back
   * to the next one.
   */
  dropped(transport) {
    if (this.stopped || this.ended) return;
    this.closeTransports();
    if (!this.worked[transport]) this.failures += 1;
    if (!this.worked[transport] && this.failures >= FAILURES_BEFORE_FALLBACK && transport !== 'poll') {
      this.failures = 0;
      this.backoff = BACKOFF_START_MS;
      this.transport = transport === 'ws' ? 'sse' : 'poll';
      this.connect();
      return;
    }
    // Full jitter: anywhere between half the backoff and all of it, so a
    // restarted gateway is not met by every fan at the same instant.
    const delay = this.backoff / 2 + Math.random() * (this.backoff / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    if (globalThis.navigator?.onLine === false) this.setConnection('offline');
    else this.setConnection('reconnecting', Date.now() + Math.round(delay));
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    this.backoff = BACKOFF_START_MS;
    this.connect();
  }

  connectWs() {
    let socket;
    try {
      socket = new WebSocket(this.url('ws'));
    } catch {
      this.dropped('ws');
      return;
    }
    this.socket = socket;
    socket.onopen = () => this.connected('ws');
    socket.onmessage = (e) => {
      try { this.handleMessage(JSON.parse(e.data)); } catch { /* not ours */ }
    };
    socket.onclose = (e) => {
      this.socket = null;
      // A gateway that is restarting (1012) or shed a lagging connection
      // (1013) asks for a reconnect: with jitter, so its fans do not all
      // ask the status endpoint of the other nodes at the same instant.
      // Anything else may mean the place is gone: ask first.
      if (e.code === 1012 || e.code === 1013) this.dropped('ws');
      else this.failed('ws');
    };
  }

  connectSse() {
    const source = new EventSource(this.url('sse'));
    this.source = source;
    source.onopen = () => this.connected('sse');
    source.onmessage = (e) => {
      try { this.handleMessage(JSON.parse(e.data)); } catch { /* not ours */ }
    };
    source.onerror = () => {
      // EventSource would retry by itself; the client decides instead, so it
      // can fall back when SSE never gets through, and stop when the place
      // is gone.
      this.failed('sse');
    };
  }

  async poll() {
    if (this.stopped || this.ended) return;
    try {
      const s = await api(this.baseUrl, 'GET', `/v1/shows/${this.showId}/queue/status`,
        { headers: { 'x-queue-ticket': this.ticket } });
      this.connected('poll');
      this.handleState(s);
      if (!this.ended && !this.stopped) this.timer = setTimeout(() => this.poll(), pollDelay(s));
    } catch (e) {
      if (e.status === 401 || e.status === 404) {
        this.lost(e);
        return;
      }
      this.dropped('poll');
    }
  }

  /**
   * After a failed push connection: the place ended (a terminal status), the
   * ticket is no good or the gateway no longer knows the show or the spot
   * (401, 404: lost), or it is still there (retry the transport). A gateway
   * that does not answer is retried too.
   */
  async checkStatus(transport) {
    try {
      const s = await api(this.baseUrl, 'GET', `/v1/shows/${this.showId}/queue/status`, {
        headers: { 'x-queue-ticket': this.ticket },
        signal: AbortSignal.timeout?.(STATUS_TIMEOUT_MS),
      });
      if (this.stopped || this.ended) return;
      this.handleState(s);
      if (!this.ended) this.dropped(transport);
    } catch (e) {
      if (this.stopped || this.ended) return;
      if (e.status === 401 || e.status === 404) this.lost(e);
      else this.dropped(transport);
    }
  }

  /**
   * The place cannot be followed any more: the ticket is refused (expired,
   * signed with a retired secret, stale) or the gateway no longer knows the
   * show or the spot. The client stops; the fan can join again.
   */
  lost(e) {
    this.ended = true;
    forget(this.showId, this.storage);
    this.closeTransports();
    clearTimeout(this.timer);
    this.setConnection('stopped');
    this.fail(e);
  }
}
