#!/usr/bin/env node
// Verify an anteroom admission token at the origin, offline, with `jose`.
//
//   node verify.mjs --jwks-url https://queue.example/.well-known/jwks.json \
//     --issuer anteroom [--audience tickets.example] [--show 7] TOKEN
//
// Exits 0 and prints the claims as JSON when the token is valid: signed by a
// key in anteroom's JWKS (EdDSA only), issued by --issuer, for --audience (if
// given), not expired, and (with --show) for that show. Exits 1 with the
// reason otherwise. `npm ci` here installs jose.
//
// Offline verification proves who was admitted and until when; whether the
// session was ended early (paid, left) is what POST /v1/admission/introspect
// answers.

import { parseArgs } from 'node:util';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const { values, positionals } = parseArgs({
  options: {
    'jwks-url': { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    show: { type: 'string' },
  },
  allowPositionals: true,
});
if (!values['jwks-url'] || !values.issuer || positionals.length !== 1) {
  console.error('usage: verify.mjs --jwks-url URL --issuer ISS [--audience AUD] [--show ID] TOKEN');
  process.exit(2);
}

// Cached; refetched (with a cooldown) when a token names an unknown `kid`.
const jwks = createRemoteJWKSet(new URL(values['jwks-url']));
try {
  const { payload } = await jwtVerify(positionals[0], jwks, {
    algorithms: ['EdDSA'], // never what the token's header says
    issuer: values.issuer,
    audience: values.audience,
    requiredClaims: ['exp', 'iss', 'sub', 'show', 'sid'],
  });
  if (values.show !== undefined && payload.show !== Number(values.show)) {
    throw new Error('for another show');
  }
  console.log(JSON.stringify(payload));
} catch (error) {
  console.error(`invalid admission: ${error.code ?? ''} ${error.message}`);
  process.exit(1);
}
