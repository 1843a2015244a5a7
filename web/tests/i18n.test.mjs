// The message catalogues, without a browser: English and Korean have the
// same keys and the same placeholders; every key the page uses is in them;
// and every error code the gateway can answer has a sentence in both.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { ROOT } from './gateway.mjs';

const read = (path) => readFileSync(`${ROOT}${path}`, 'utf8');
const en = JSON.parse(read('web/i18n/en.json'));
const ko = JSON.parse(read('web/i18n/ko.json'));

/** The placeholders of a message (of every plural form). */
function placeholders(message) {
  const forms = typeof message === 'object' ? Object.values(message) : [message];
  return [...new Set(forms.flatMap((f) => [...f.matchAll(/\{(\w+)\}/g)].map((m) => m[1])))].sort();
}

test('English and Korean have the same keys, placeholders and plural forms', () => {
  assert.deepEqual(Object.keys(ko).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en)) {
    assert.deepEqual(placeholders(ko[key]), placeholders(en[key]), key);
    for (const [lang, message] of [['en', en[key]], ['ko', ko[key]]]) {
      if (typeof message === 'object') {
        assert.ok('other' in message, `${lang} ${key}: a plural needs "other"`);
        assert.ok(placeholders(message).includes('count'), `${lang} ${key}: a plural is chosen by {count}`);
      } else {
        assert.equal(typeof message, 'string', `${lang} ${key}`);
        assert.ok(message.trim().length > 0, `${lang} ${key} is empty`);
      }
    }
  }
});

test('every key the page uses is in the catalogues', () => {
  const html = read('web/index.html');
  const app = read('web/app.js') + read('web/i18n.js');
  const used = new Set([
    ...[...html.matchAll(/data-i18n="([\w.]+)"/g)].map((m) => m[1]),
    ...[...html.matchAll(/data-i18n-attrs="([^"]+)"/g)].flatMap((m) => m[1].split(';').map((p) => p.split('=')[1].trim())),
    // t('key'…), and keys written out where a ternary picks one.
    ...[...app.matchAll(/\bt\(\s*'([\w.]+)'/g)].map((m) => m[1]),
    ...[...app.matchAll(/'((?:[a-z_]+\.)+[a-z_]+)'/g)].map((m) => m[1])
      .filter((k) => /^(line|ending|ended|not_open|notice|prequeue|paused|waiting|connection|footer|checkout|seat|map|expect|buy|done|state|shows|errors|when|countdown|page|lang|signin)\./.test(k)),
  ]);
  // Keys built from a code: `errors.<code>`, `ending.<reason>.*`, `footer.<transport>`, `seat.<status>`.
  for (const reason of ['left', 'abandoned', 'not_in_queue', 'sold_out', 'show_closed', 'removed', 'other', 'lost']) {
    used.add(`ending.${reason}.title`).add(`ending.${reason}.why`);
  }
  for (const transport of ['ws', 'sse', 'poll']) used.add(`footer.${transport}`);
  for (const status of ['available', 'mine', 'held', 'sold']) used.add(`seat.${status}`);
  const missing = [...used].filter((k) => !(k in en));
  assert.deepEqual(missing, [], 'keys used but not in the catalogues');
  assert.ok(used.size > 100, `found only ${used.size} keys in use: the scan is broken`);
});

/**
 * The error codes the gateway can answer: every code an `ApiError` is built
 * with in src/http (constructors, `code:` fields, the token and sale
 * mappings, the show-state codes, the fixed ones), and the Errors table of
 * docs/protocol.md.
 */
function serverErrorCodes() {
  const codes = new Set();
  const dir = `${ROOT}src/http/`;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.rs'))) {
    const src = readFileSync(dir + file, 'utf8');
    const patterns = [
      /(?:bad_request|unauthorized|not_found|not_found_with|forbidden|conflict|payment_required|unprocessable)\(\s*"([a-z_]+)"/g,
      /\bcode:\s*"([a-z_]+)"/g,
      /\(Self::\w+,\s*"([a-z_]+)"\)/g,
    ];
    if (file === 'error.rs') patterns.push(/=>\s*\(?\s*"([a-z_]+)"/g);
    if (file === 'admin.rs') patterns.push(/ShowState::\w+(?:\s*\|\s*ShowState::\w+)*\s*=>\s*"([a-z_]+)"/g);
    for (const re of patterns) for (const m of src.matchAll(re)) codes.add(m[1]);
  }
  const protocol = read('docs/protocol.md');
  const table = protocol.slice(protocol.indexOf('\n## Errors'));
  for (const line of table.split('\n').filter((l) => /^\| \d{3} \|/.test(l))) {
    const cell = line.split('|')[2];
    for (const m of cell.matchAll(/`([a-z_]+)`/g)) codes.add(m[1]);
  }
  return codes;
}

test('every error code the gateway can answer has a sentence in both languages', () => {
  const codes = serverErrorCodes();
  // The scan finds the codes it should (a change of shape in the Rust source
  // would otherwise make this test pass with nothing checked).
  for (const known of ['seat_taken', 'ticket_expired', 'invalid_ticket', 'rate_limited', 'internal',
    'method_not_allowed', 'insufficient_points', 'origin_not_allowed', 'not_open_yet', 'show_state']) {
    assert.ok(codes.has(known), `the scan missed ${known}: ${[...codes].join(' ')}`);
  }
  const missing = [...codes].filter((c) => !(`errors.${c}` in en) || !(`errors.${c}` in ko));
  assert.deepEqual(missing, [], 'error codes without a sentence');
  // And the page's own: the gateway unreachable, a browser that cannot solve.
  for (const own of ['network', 'challenge_unsupported', 'unknown']) assert.ok(`errors.${own}` in en, own);
});
