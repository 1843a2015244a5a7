// What the browser tests share: the gateway binary (started on a free port
// with the environment a test gives it, restartable, stopped with SIGTERM)
// and Debian's Chromium, driven by playwright-core (Playwright cannot
// download a browser here).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { createRequire } from 'node:module';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = process.env.ANTEROOM_BIN ?? `${ROOT}target/debug/anteroom`;
const CHROMIUM = process.env.ANTEROOM_CHROMIUM ?? '/usr/bin/chromium';
export const ADMIN_KEY = 'browser-test-admin-key';
const SECRET = 'browser-test-ticket-secret';

/** Headless Chromium, as the tests run it. */
export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** How long a page step may take before a test fails. */
export const PATIENCE = 15_000;

/** A phone's window (an iPhone 12-15: 390 CSS px wide) and a desktop's. */
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };

/**
 * A fresh browser context and its page: a phone-sized window in English,
 * unless `locale` (the browser's language, e.g. `ko-KR`) or `viewport` say
 * otherwise.
 */
export async function newPage(browser, { locale = 'en-US', viewport = PHONE } = {}) {
  const context = await browser.newContext({ viewport, locale });
  const page = await context.newPage();
  page.setDefaultTimeout(PATIENCE);
  return { context, page };
}

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/**
 * Runs axe-core on the page as it is now and fails on any serious or
 * critical violation, naming `what` (the view) and the elements.
 */
export async function assertAccessible(page, what) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  });
  assert.deepEqual(violations, [], `${what}: ${JSON.stringify(violations, null, 2)}`);
}

/**
 * One Chromium for a test file: started before its first test, closed after
 * its last. `newPage()` opens a fresh context and page in it.
 */
export function chromiumForFile() {
  let browser;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });
  return { newPage: (options) => newPage(browser, options) };
}

/** Signs in on the page (demo mode, in English) and joins the show's line. */
export async function signInAndJoin(page, gw, name, title) {
  await page.goto(gw.base + '/');
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: `Join the line for ${title}` }).click();
}

const SHOTS = `${ROOT}docs/screenshots/`;

/**
 * Saves docs/screenshots/<name>-<language>-phone.png and -desktop.png: the
 * page as it is now, in a phone's window and a desktop's (then back to the
 * window it had).
 */
export async function screenshots(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const lang = await page.evaluate(() => document.documentElement.lang);
  const was = page.viewportSize();
  for (const [form, size] of [['phone', PHONE], ['desktop', DESKTOP]]) {
    await page.setViewportSize(size);
    await page.screenshot({ path: `${SHOTS}${name}-${lang}-${form}.png`, fullPage: form === 'phone' ? false : true });
  }
  await page.setViewportSize(was);
}

/** Waits until the element `#id` is shown. */
export const visible = (page, id) => page.locator(`#${id}`).waitFor({ state: 'visible' });

/** Holds the seat with this id on the map (clicking it). */
export async function holdSeat(page, seatId) {
  await page.locator(`#seat-map button.seat[data-seat="${seatId}"]`).click();
  await page.locator(`#seat-map button.seat[data-seat="${seatId}"][data-status="mine"]`).waitFor();
}

/**
 * A proxy that refuses WebSocket upgrades: every socket fails before it
 * opens, as the browser reports a refused upgrade.
 */
export async function blockWebSockets(context) {
  await context.addInitScript(() => {
    window.WebSocket = class extends EventTarget {
      constructor() {
        super();
        this.readyState = 0;
        setTimeout(() => {
          this.readyState = 3;
          this.onerror?.(new Event('error'));
          this.onclose?.(new CloseEvent('close', { code: 1006 }));
        }, 20);
      }
      send() {}
      close() {}
    };
  });
}

/** A proxy that buffers event streams to death: every EventSource fails before it opens. */
export async function blockEventSource(context) {
  await context.addInitScript(() => {
    window.EventSource = class extends EventTarget {
      constructor() {
        super();
        setTimeout(() => this.onerror?.(new Event('error')), 20);
      }
      close() {}
    };
  });
}

/**
 * Keeps, in `window.transitions`, when the line's phase changed and what the
 * page announced to screen readers: `{at, kind: 'phase'|'announce', value}`.
 */
export async function recordTransitions(context) {
  await context.addInitScript(() => {
    window.transitions = [];
    const note = (kind, value) => window.transitions.push({ at: Date.now(), kind, value });
    document.addEventListener('DOMContentLoaded', () => {
      const view = document.getElementById('waiting-view');
      new MutationObserver(() => note('phase', view.dataset.phase))
        .observe(view, { attributes: true, attributeFilter: ['data-phase'] });
      const said = document.getElementById('announce');
      new MutationObserver(() => note('announce', said.textContent))
        .observe(said, { childList: true, characterData: true, subtree: true });
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export class Gateway {
  static async start(env = {}) {
    const gw = new Gateway(env, await freePort());
    await gw.start();
    return gw;
  }

  constructor(env, port) {
    this.env = {
      ...process.env,
      ANTEROOM_LISTEN: `127.0.0.1:${port}`,
      ANTEROOM_ADMIN_KEY: ADMIN_KEY,
      ANTEROOM_TICKET_SECRET: SECRET,
      ANTEROOM_SEED_DEMO: 'false',
      ANTEROOM_WEB_DIR: `${ROOT}web`,
      ANTEROOM_LOG_FORMAT: 'text',
      ANTEROOM_SHUTDOWN_DRAIN_SECS: '0',
      ...env,
    };
    this.base = `http://127.0.0.1:${port}`;
    this.log = [];
  }

  async start() {
    this.proc = spawn(BIN, [], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr.on('data', (d) => {
      this.log.push(d.toString());
      if (process.env.ANTEROOM_TEST_LOG) process.stderr.write(d);
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const res = await fetch(`${this.base}/healthz`);
        if (res.ok) return;
      } catch { /* not yet */ }
      if (this.proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`gateway did not start:\n${this.log.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM, as an orchestrator stops it; waits for the exit. */
  async stop() {
    this.proc.kill('SIGTERM');
    await this.exited;
  }

  async api(method, path, { token, body, headers = {} } = {}) {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(this.base + path, {
      method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
    return data;
  }

  async createShow(title, capacity, more = {}) {
    return this.api('POST', '/v1/admin/shows', {
      token: ADMIN_KEY,
      body: {
        title, capacity, session_ttl_seconds: 600,
        seats: [{ name: 'Floor', rows: 2, seats_per_row: 8, price: 40 }],
        ...more,
      },
    });
  }

  /** An admin call (`/v1/admin/...`). */
  async admin(method, path, body) {
    return this.api(method, path, { token: ADMIN_KEY, body });
  }

  /** A fan that joins through the API (no browser), signed in by name (demo mode). */
  async fan(name, showId) {
    const { token } = await this.api('POST', '/v1/sessions', { body: { username: name } });
    return this.join(token, showId);
  }

  /** Joins with a bearer token (a demo token, or the site's JWT in jwt mode). */
  async join(token, showId) {
    const spot = await this.api('POST', `/v1/shows/${showId}/queue`, { token });
    return { token, ...spot };
  }
}
