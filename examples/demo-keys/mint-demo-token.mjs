#!/usr/bin/env node
// DEMO ONLY. Mints a token signed by the demo IdP key in this folder, for trying the
// quick start. Never use these keys for anything real: the private key is public.
//   node examples/demo-keys/mint-demo-token.mjs [--sub alice] [--exp-in 3600] [--aud mcp-demo] [--scope "mcp:tools"]
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importJWK, SignJWT } from 'jose';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'alice' },
    aud: { type: 'string', default: 'mcp-demo' },
    scope: { type: 'string', default: 'mcp:tools mcp:resources' },
    'exp-in': { type: 'string', default: '3600' },
    iss: { type: 'string', default: 'https://demo-idp.obo-authz.example' },
  },
});
const jwk = JSON.parse(readFileSync(join(here, 'demo-idp.private.jwk.json'), 'utf8'));
const key = await importJWK(jwk, 'ES256');
const now = Math.floor(Date.now() / 1000);
const token = await new SignJWT({ scope: values.scope, email: `${values.sub}@example.com`, groups: ['demo-users'] })
  .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
  .setIssuer(values.iss)
  .setSubject(values.sub)
  .setAudience(values.aud)
  .setIssuedAt(now)
  .setExpirationTime(now + Number(values['exp-in']))
  .sign(key);
process.stdout.write(`${token}\n`);
