// anteroom.js — the browser client of the anteroom waiting room.
//
// An ES module with no dependencies. `join(showId, options)` returns a
// QueueClient that keeps the fan's place and emits what the gateway pushes:
//
//   rank        {rank, ahead, eta_seconds}   the fan's place moved
//   active      {access_token, active_until} admitted: buy now
//   expiring    {seconds_left}               the session ends soon
//   expired     {}                           the session ran out
//   closed      {reason}                     the place ended (left, abandoned, completed)
//   transport   {transport: 'ws'|'sse'|'poll'}
//   connection  {state: 'connected'|'reconnecting'|'offline'}
//   error       {code, message}              the place cannot be kept (e.g. ticket expired)
//
// Transports: WebSocket first; Server-Sent Events if WebSockets never get
// through; REST polling (honouring `poll_after_ms`) if neither does. A
// transport that worked once is retried after a drop (a gateway restart),
// with jittered exponential backoff, and the fan resumes with the same ticket,
// keeping the place. The ticket is kept in sessionStorage, so a page reload
// resumes too.

const STORAGE_PREFIX = 'anteroom.ticket.';
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10_000;
/// Attempts that never connected before giving up on a transport.
const FAILURES_BEFORE_FALLBACK = 2;
const TERMINAL = new Set(['expired', 'closed']);

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
 * @param {{token?: string, body?: unknown, headers?: Record<string,string>}} [opts]
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
    this.ended = false;
    this.connectionState = null;
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
      this.fail(e);
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
    this.closeTransports();
    clearTimeout(this.timer);
    globalThis.removeEventListener?.('offline', this.onOffline);
    globalThis.removeEventListener?.('online', this.onOnline);
  }

  async joinQueue() {
    const spot = await api(this.baseUrl, 'POST', `/v1/shows/${this.showId}/queue`, { token: this.token });
    this.ticket = spot.ticket;
    this.storage?.setItem(STORAGE_PREFIX + this.showId, spot.ticket);
    this.handleState(spot);
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setConnection(state) {
    if (this.connectionState === state) return;
    this.connectionState = state;
    this.emit('connection', { state });
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
    if (TERMINAL.has(msg.type)) {
      this.ended = true;
      forget(this.showId, this.storage);
      this.closeTransports();
      clearTimeout(this.timer);
    }
    this.emit(msg.type, msg);
  }

  /** A REST answer (join or status) turned into the pushed message it matches. */
  handleState(s) {
    if (s.state === 'waiting') {
      this.handleMessage({ type: 'rank', rank: s.rank, ahead: s.ahead, eta_seconds: s.eta_seconds ?? null });
    } else if (s.state === 'active') {
      this.handleMessage({ type: 'active', access_token: s.access_token, active_until: s.active_until });
    } else if (s.state === 'expired') {
      this.handleMessage({ type: 'expired' });
    } else {
      this.handleMessage({ type: 'closed', reason: s.reason ?? 'closed' });
    }
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
   * A transport dropped or never connected: retry it with backoff, or, if it
   * never worked here, fall back to the next one.
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
    this.setConnection(globalThis.navigator?.onLine === false ? 'offline' : 'reconnecting');
    // Full jitter: anywhere between half the backoff and all of it, so a
    // restarted gateway is not met by every fan at the same instant.
    const delay = this.backoff / 2 + Math.random() * (this.backoff / 2);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
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
      if (e.code === 1008) {
        // The gateway refused the ticket: ask the REST status why.
        this.checkStatus();
        return;
      }
      this.dropped('ws');
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
      // can fall back when SSE never gets through.
      this.dropped('sse');
    };
  }

  async poll() {
    if (this.stopped || this.ended) return;
    try {
      const s = await api(this.baseUrl, 'GET', `/v1/shows/${this.showId}/queue/status`,
        { headers: { 'x-queue-ticket': this.ticket } });
      this.connected('poll');
      this.handleState(s);
      if (!this.ended && !this.stopped) {
        this.timer = setTimeout(() => this.poll(), s.poll_after_ms ?? 2000);
      }
    } catch (e) {
      if (e.status === 401 || e.status === 404) {
        this.lost(e);
        return;
      }
      this.dropped('poll');
    }
  }

  /** After a refused socket: the ticket is no good, or the place ended. */
  async checkStatus() {
    try {
      const s = await api(this.baseUrl, 'GET', `/v1/shows/${this.showId}/queue/status`,
        { headers: { 'x-queue-ticket': this.ticket } });
      this.handleState(s);
      if (!this.ended) this.dropped(this.transport);
    } catch (e) {
      if (e.status === 401 || e.status === 404) this.lost(e);
      else this.dropped(this.transport);
    }
  }

  /** The ticket no longer works (expired, or signed with a retired secret). */
  lost(e) {
    this.ended = true;
    forget(this.showId, this.storage);
    this.closeTransports();
    this.fail(e);
  }
}
