// Proof-of-work solve time in headless Chromium (docs/benchmarks.md, "Proof
// of work (issue 12)"). Starts the gateway binary, creates a show with the
// given challenge cost, and has the page (web/anteroom.js's solveChallenge,
// as a fan's browser runs it) fetch and solve a fresh challenge, then join
// with it (each must be accepted: 201), `--solves` times. Prints each solve
// and the median and p95.
//
//   cd web && npm ci && node bench/pow.mjs --cost 100000 --solves 20
//
// ANTEROOM_BIN (default ../target/debug/anteroom; the gateway's build does
// not matter here, the solving is the browser's) and ANTEROOM_CHROMIUM
// (default /usr/bin/chromium) as for the browser tests. `--workers N`
// overrides the page's worker count (one per core by default; 0 solves on
// the page). `--subtle` solves with SubtleCrypto instead, on the page,
// 256 digests in flight (the comparison that made anteroom.js hash in
// JavaScript; compare it with `--workers 0`).

import { parseArgs } from 'node:util';
import { Gateway, launchChromium } from '../tests/gateway.mjs';

const { values: args } = parseArgs({
  options: {
    cost: { type: 'string', default: '100000' },
    solves: { type: 'string', default: '20' },
    workers: { type: 'string' },
    subtle: { type: 'boolean', default: false },
  },
});
const cost = Number(args.cost);
const solves = Number(args.solves);
const workers = args.workers === undefined ? undefined : Number(args.workers);

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

const gw = await Gateway.start({ RUST_LOG: 'warn' });
const browser = await launchChromium();
try {
  const show = await gw.createShow('PoW bench', 1_000_000, {
    session_ttl_seconds: 3600, challenge_cost: cost,
  });

  const page = await (await browser.newContext()).newPage();
  await page.goto(`${gw.base}/`);
  const info = await page.evaluate(() => ({
    cores: navigator.hardwareConcurrency, userAgent: navigator.userAgent,
  }));
  console.log(`Chromium: ${info.userAgent}`);
  const how = args.subtle ? 'SubtleCrypto on the page' : `workers: ${workers ?? `one per core (${info.cores})`}`;
  console.log(`cost (maxnumber) ${cost}, ${solves} solves, ${how}`);
  const runs = [];
  for (let i = 0; i < solves; i += 1) {
    const run = await page.evaluate(async ({ showId, i, workers, subtle }) => {
      const { api, solveChallenge } = await import('/anteroom.js');
      const bySubtle = async (c) => {
        const encoder = new TextEncoder();
        const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
        for (let n = 0; n <= c.maxnumber; n += 256) {
          const batch = [];
          for (let j = n; j <= Math.min(c.maxnumber, n + 255); j += 1) {
            batch.push(crypto.subtle.digest('SHA-256', encoder.encode(c.salt + j)));
          }
          const found = (await Promise.all(batch)).findIndex((d) => hex(d) === c.challenge);
          if (found >= 0) {
            const { algorithm, challenge, salt, signature } = c;
            return btoa(JSON.stringify({ algorithm, challenge, number: n + found, salt, signature }));
          }
        }
        throw new Error('no solution');
      };
      const { token } = await api(location.href, 'POST', '/v1/sessions', { body: { username: `pow${i}` } });
      const challenge = await api(location.href, 'GET', `/v1/shows/${showId}/challenge`);
      const started = performance.now();
      const altcha = subtle ? await bySubtle(challenge) : await solveChallenge(challenge, { workers });
      const ms = performance.now() - started;
      const res = await fetch(`/v1/shows/${showId}/queue`, {
        method: 'POST', headers: { authorization: `Bearer ${token}`, 'x-altcha': altcha },
      });
      return { ms, status: res.status, number: JSON.parse(atob(altcha)).number };
    }, { showId: show.id, i, workers, subtle: args.subtle });
    if (run.status !== 201) throw new Error(`solve ${i}: the join answered ${run.status}`);
    runs.push(run);
    console.log(`solve ${String(i + 1).padStart(2)}: ${run.ms.toFixed(0).padStart(6)} ms  (number ${run.number})`);
  }
  const ms = runs.map((r) => r.ms).sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  console.log(`median ${percentile(ms, 50).toFixed(0)} ms, p95 ${percentile(ms, 95).toFixed(0)} ms, ` +
    `mean ${mean.toFixed(0)} ms, min ${ms[0].toFixed(0)} ms, max ${ms[ms.length - 1].toFixed(0)} ms`);
  if (args.subtle || workers === 0) {
    // One thread tries 0, 1, 2, … up to the number: its rate is exact.
    const tried = runs.reduce((sum, r) => sum + r.number + 1, 0);
    const seconds = runs.reduce((sum, r) => sum + r.ms, 0) / 1000;
    console.log(`one thread: ${Math.round(tried / seconds)} numbers tried per second`);
  }
} finally {
  await browser.close();
  await gw.stop();
}
