#!/usr/bin/env node
// Check latency while the built-in STS's token endpoint is flooded (issue 17, finding 7).
// Two servers from the same config: one with the default HTTP listener limits (per-client
// and global token buckets, a cap on token requests in progress) and one with those limits
// lifted. For each, Check latency is measured without a flood (the same-run baseline) and
// during a flood of valid token-exchange requests (each a verify and a sign on the event loop
// that answers Checks), in interleaved rounds; the figures are ratios to the baseline.
//
//   node bench/sts-flood.mjs [--rounds N] [--seconds S] [--connections C]
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
if (!existsSync(join(root, 'dist', 'src', 'main.js'))) {
  console.error('sts-flood: run `npm run build` first');
  process.exit(2);
}
const { values: argv } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '8' }, connections: { type: 'string', default: '32' } } });
const grpc = await import('@grpc/grpc-js');
const { loadProtos } = await import('../dist/src/grpc/proto.js');
const { PIN, startServerToFile, run } = await import('./lib/procs.mjs');
const { jwksJson, newEs256Key, signJwt } = await import('./lib/tokens.mjs');
const { Histogram } = await import('./lib/hist.mjs');
const { hardeningDocs } = await import('./lib/configs.mjs');
PIN.enabled = false;

const dir = mkdtempSync(join(tmpdir(), 'obo-authz-flood-'));
const ISSUER = 'https://idp.flood.example';
const SECRET = 'flood-client-secret-0123456789';
const idp = newEs256Key('flood-idp');
const docs = hardeningDocs(dir, ISSUER, jwksJson(idp), { stsIssuer: 'https://sts.flood.example', tokenEndpoint: { secret: SECRET, audiences: ['mcp-*'] } });
const cfgDir = join(dir, 'config');
mkdirSync(cfgDir);
writeFileSync(
  join(cfgDir, 'config.yaml'),
  [
    docs.settings,
    docs.ra,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: istio-system}
spec:
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["*"]}}], to: [{operation: {paths: ["/api/*"]}}]}]
`,
    docs.sts,
  ].join('---\n'),
);
const now = Math.floor(Date.now() / 1000);
const userToken = signJwt(idp, { iss: ISSUER, sub: 'alice', iat: now, exp: now + 3600 });
const form = new URLSearchParams({
  grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
  client_id: 'agent',
  client_secret: SECRET,
  subject_token: userToken,
  subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  audience: 'mcp-tools',
}).toString();

const OFF = { tokenRatePerSecond: 1e9, tokenBurst: 1e9, tokenGlobalRatePerSecond: 1e9, tokenConcurrency: 1e9, maxConnectionsPerClient: 1e6 };
const servers = {
  limited: await startServerToFile('limited', process.execPath, [join(here, 'lib', 'limits-server.mjs'), cfgDir, '{}'], join(dir, 'limited.log')),
  unlimited: await startServerToFile('unlimited', process.execPath, [join(here, 'lib', 'limits-server.mjs'), cfgDir, JSON.stringify(OFF)], join(dir, 'unlimited.log')),
};
const { AuthorizationClient } = loadProtos();
const req = {
  attributes: { request: { http: { id: 'f', method: 'GET', path: '/api/x', host: 'h', headers: { authorization: `Bearer ${userToken}` } } } },
};

/** Check latency for `seconds` with 4 loops of sequential Checks (the token is cached: the Check itself is cheap). */
async function measureChecks(server, seconds) {
  const client = new AuthorizationClient(server.grpcAddress, grpc.credentials.createInsecure());
  const h = new Histogram();
  let errors = 0;
  const end = Date.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (Date.now() < end) {
        const t = performance.now();
        await new Promise((resolve) =>
          client.Check(req, { deadline: Date.now() + 1000 }, (err, r) => {
            if (err || r.status.code !== 0) errors++;
            resolve();
          }),
        );
        h.record((performance.now() - t) * 1000);
      }
    }),
  );
  client.close();
  return { h, errors };
}

const rounds = Number(argv.rounds);
const seconds = Number(argv.seconds);
const acc = { limited: { base: new Histogram(), flood: new Histogram(), floodStatuses: {} }, unlimited: { base: new Histogram(), flood: new Histogram(), floodStatuses: {} } };
let errors = 0;
for (let r = 0; r < rounds; r++) {
  for (const name of ['limited', 'unlimited']) {
    const s = servers[name];
    await measureChecks(s, 1); // warm-up
    const base = await measureChecks(s, seconds);
    acc[name].base.merge(base.h);
    const flood = run(process.execPath, [join(here, 'lib', 'token-flood.mjs'), s.httpAddress, String(seconds + 1), argv.connections, form]);
    await new Promise((res) => setTimeout(res, 500));
    const during = await measureChecks(s, seconds);
    acc[name].flood.merge(during.h);
    const f = await flood;
    for (const [k, v] of Object.entries(JSON.parse(f.stdout || '{}'))) acc[name].floodStatuses[k] = (acc[name].floodStatuses[k] ?? 0) + v;
    errors += base.errors + during.errors;
    s.truncateLog?.();
  }
}
for (const s of Object.values(servers)) await s.stop();
rmSync(dir, { recursive: true, force: true });

const ms = (h, q) => Math.round((h.quantile(q) / 1000) * 100) / 100;
const out = {};
for (const [name, a] of Object.entries(acc)) {
  out[name] = {
    baseline: { checks: a.base.n, p50ms: ms(a.base, 0.5), p99ms: ms(a.base, 0.99) },
    flood: { checks: a.flood.n, p50ms: ms(a.flood, 0.5), p99ms: ms(a.flood, 0.99), tokenResponses: a.floodStatuses },
    ratio: { p50: Math.round((a.flood.quantile(0.5) / a.base.quantile(0.5)) * 100) / 100, p99: Math.round((a.flood.quantile(0.99) / a.base.quantile(0.99)) * 100) / 100 },
  };
}
console.log(JSON.stringify({ rounds, seconds, connections: Number(argv.connections), checkErrors: errors, ...out }, null, 2));
