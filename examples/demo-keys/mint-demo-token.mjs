#!/usr/bin/env node
// DEMO ONLY. Mints a user token signed by the demo identity provider's key in this folder
// (issuer https://demo-idp.obo-authz.example, kid demo-idp-es256-1), the one identity the
// quick start (examples/quickstart) and the Envoy demo (envoy/) both trust. The private key
// is public: a token it signs proves nothing outside these demos. Needs `npm ci` (jose).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importJWK, SignJWT } from 'jose';

const USAGE = `usage: node examples/demo-keys/mint-demo-token.mjs [options]

Prints a demo user token (a compact JWT) on stdout.

options:
  --sub SUBJECT    the user (default alice); the token also carries email SUBJECT@example.com
  --scope SCOPES   space-separated scopes (default "mcp:tools mcp:resources")
  --aud AUDIENCE   audience (default mcp-demo, what the demo RequestAuthentications accept)
  --ttl SECONDS    lifetime in seconds (default 3600); 1 gives a token that is expired a minute later
  --may-act SUB    add a may_act claim naming the agent allowed to act for the user
  --help           show this help`;

const ISSUER = 'https://demo-idp.obo-authz.example';
let values;
try {
  ({ values } = parseArgs({
    options: {
      sub: { type: 'string', default: 'alice' },
      scope: { type: 'string', default: 'mcp:tools mcp:resources' },
      aud: { type: 'string', default: 'mcp-demo' },
      ttl: { type: 'string', default: '3600' },
      'may-act': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  }));
} catch (e) {
  process.stderr.write(`mint-demo-token: ${e.message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl <= 0) {
  process.stderr.write('mint-demo-token: --ttl must be a positive number of seconds\n');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const jwk = JSON.parse(readFileSync(join(here, 'demo-idp.private.jwk.json'), 'utf8'));
const key = await importJWK(jwk, 'ES256');
const now = Math.floor(Date.now() / 1000);
const claims = { scope: values.scope, email: `${values.sub}@example.com`, groups: ['demo-users'] };
if (values['may-act']) claims.may_act = { sub: values['may-act'] };
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
  .setIssuer(ISSUER)
  .setSubject(values.sub)
  .setAudience(values.aud)
  .setIssuedAt(now)
  .setExpirationTime(now + ttl)
  .sign(key);
process.stdout.write(`${token}\n`);
