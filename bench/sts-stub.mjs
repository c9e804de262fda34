#!/usr/bin/env node
// A loopback RFC 8693 token endpoint for scenario 5 (exchange cache miss): it checks the
// grant type, the client credentials and that a subject token is present, and answers
// with a token for the requested audience, minted once per audience at start-up (the STS's
// own cost is not what scenario 5 measures: obo-authz's side of the exchange is).
// Prints {"stsAddress": "127.0.0.1:PORT"} when listening.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { newEs256Key, signJwt } from './lib/tokens.mjs';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' }, 'client-id': { type: 'string', default: 'obo-authz-bench' }, 'client-secret': { type: 'string', default: 'bench-secret' } } });
const key = newEs256Key('bench-sts');
const issued = new Map();
let count = 0;

function tokenFor(aud) {
  let body = issued.get(aud);
  if (!body) {
    const now = Math.floor(Date.now() / 1000);
    const access = signJwt(key, { iss: 'https://sts.bench.example', sub: 'exchanged', aud, iat: now, exp: now + 3600, scope: 'mcp.tools' });
    body = Buffer.from(JSON.stringify({ access_token: access, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 3600, scope: 'mcp.tools' }));
    issued.set(aud, body);
  }
  return body;
}

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method !== 'POST' || req.url !== '/oauth2/token') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const f = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    let err = null;
    if (f.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') err = 'unsupported_grant_type';
    else if (f.get('client_id') !== values['client-id'] || f.get('client_secret') !== values['client-secret']) err = 'invalid_client';
    else if (!f.get('subject_token') || !f.get('subject_token_type')) err = 'invalid_request';
    if (err) {
      res.writeHead(err === 'invalid_client' ? 401 : 400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err }));
      return;
    }
    count++;
    const body = tokenFor(f.get('audience') ?? f.get('resource') ?? 'unknown');
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': body.length }).end(body);
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'sts stub listening', grpcAddress: 'n/a', stsAddress: `127.0.0.1:${server.address().port}` })}\n`);
});
// the orchestrator reads the exchange count (to prove every request was a miss)
setInterval(() => process.stdout.write(`${JSON.stringify({ stsExchanges: count })}\n`), 1000).unref();
process.on('SIGTERM', () => process.exit(0));
