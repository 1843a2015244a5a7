// The page in jwt mode: the ticketing site hands it the fan's own token in
// the URL fragment; the page skips its sign-in, joins, waits, and is
// admitted by push.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_KEY, Gateway, chromiumForFile } from './gateway.mjs';

const SITE_SECRET = 'the-ticket-site-secret';
const ISSUER = 'https://tickets.example/';
const AUDIENCE = 'anteroom';

const { newPage } = chromiumForFile();

const b64url = (data) => Buffer.from(data).toString('base64url');

/** The ticketing site's token for a fan (HS256, as the gateway is configured). */
function siteToken(sub) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = b64url(JSON.stringify({
    sub, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600,
  }));
  const signature = createHmac('sha256', SITE_SECRET).update(`${header}.${claims}`).digest('base64url');
  return `${header}.${claims}.${signature}`;
}

test('in jwt mode a page given the fan\'s token joins and is admitted', { timeout: 120_000 }, async () => {
  const keyFile = join(tmpdir(), `anteroom-admission-${randomUUID()}.pem`);
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const gw = await Gateway.start({
    ANTEROOM_AUTH_MODE: 'jwt',
    ANTEROOM_AUTH_HS256_SECRET: SITE_SECRET,
    ANTEROOM_AUTH_ISSUER: ISSUER,
    ANTEROOM_AUTH_AUDIENCE: AUDIENCE,
    ANTEROOM_ADMISSION_KEY_FILE: keyFile,
  });
  try {
    const show = await gw.createShow('Members night', 1);
    const holder = await gw.join(siteToken('auth0|holder'), show.id);
    assert.equal(holder.state, 'active');

    const { context, page } = await newPage();
    await page.goto(`${gw.base}/#token=${siteToken('auth0|page-fan')}`);
    // No sign-in form: straight to the shows, greeted by the site's name.
    await page.locator('#shows-view').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#who').textContent(), 'Signed in as auth0|page-fan');
    assert.equal(await page.evaluate(() => location.hash), '', 'the token leaves the address bar');
    await page.getByRole('button', { name: 'Join the line for Members night' }).click();
    await page.locator('#waiting-view').waitFor({ state: 'visible' });
    await page.locator('#rank', { hasText: '1' }).waitFor();

    // The holder leaves; the page's fan is admitted by push, with an
    // admission token naming them as the site knows them.
    await gw.api('DELETE', `/v1/shows/${show.id}/queue`, { headers: { 'x-queue-ticket': holder.ticket } });
    await page.locator('#buy-view').waitFor({ state: 'visible' });
    const access = await page.evaluate(() => sessionStorage.getItem('anteroom.access'));
    const claims = JSON.parse(Buffer.from(access.split('.')[1], 'base64url').toString());
    assert.equal(claims.sub, 'auth0|page-fan');
    assert.equal(claims.show, show.id);
    const live = await gw.api('POST', '/v1/admission/introspect', {
      token: ADMIN_KEY,
      body: { token: access },
    });
    assert.equal(live.active, true);
    await context.close();
  } finally {
    await gw.stop();
    rmSync(keyFile, { force: true });
  }
});
