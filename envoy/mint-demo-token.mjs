#!/usr/bin/env node
// Mint a user token from the DEMO identity provider (envoy/demo-keys/idp.private.jwk.json).
// DEMO ONLY: that private key is public. Run from the repository root after `npm ci`:
//
//   node envoy/mint-demo-token.mjs [--sub alice] [--scope "mcp.tools weather.read"] [--ttl 3600]
//                                  [--aud obo-authz-demo] [--may-act spiffe://...]
//
// Prints the compact JWT on stdout. Issuer and audience match envoy/config/10-request-authentication.yaml.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importJWK, SignJWT } from 'jose';

const ISSUER = 'https://idp.demo.obo-authz.dev';
const here = dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'alice' },
    scope: { type: 'string', default: 'mcp.tools weather.read' },
    ttl: { type: 'string', default: '3600' },
    aud: { type: 'string', default: 'obo-authz-demo' },
    'may-act': { type: 'string' },
  },
});

const jwk = JSON.parse(readFileSync(join(here, 'demo-keys', 'idp.private.jwk.json'), 'utf8'));
const key = await importJWK(jwk, jwk.alg);
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl <= 0) {
  process.stderr.write('--ttl must be a positive number of seconds\n');
  process.exit(2);
}
const claims = { scope: values.scope };
if (values['may-act']) claims.may_act = { sub: values['may-act'] };
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'JWT' })
  .setIssuer(ISSUER)
  .setSubject(values.sub)
  .setAudience(values.aud)
  .setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + ttl)
  .sign(key);
process.stdout.write(token + '\n');
