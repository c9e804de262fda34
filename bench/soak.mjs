#!/usr/bin/env node
// `npm run soak`: a bounded soak test of the real server (dist/) on loopback. Mixed traffic —
// allowed, denied (RBAC and anonymous), exchanged (built-in STS), bad-signature tokens and
// non-canonical paths — with distinct tokens, while the config is rewritten (atomically) and
// hot-reloaded every few seconds. Every answer is checked against the decision it must have.
// Reports RPC errors, wrong decisions, reloads, latency and the server's RSS (start, peak,
// end, and the trend over the second half); exit status 1 when there was any error or wrong
// decision. Figures go to docs/benchmarks.md.
//
//   node bench/soak.mjs [--minutes M] [--rate R] [--concurrency C] [--tokens N] [--reload-every S]
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const MAIN = join(root, 'dist', 'src', 'main.js');

const { values: argv } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    rate: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '12' },
    tokens: { type: 'string', default: '30000' },
    'reload-every': { type: 'string', default: '10' },
    out: { type: 'string', default: join(here, 'results', 'soak-latest.json') },
  },
});
const opt = {
  minutes: Number(argv.minutes),
  rate: Number(argv.rate),
  concurrency: Number(argv.concurrency),
  tokens: Number(argv.tokens),
  reloadEverySec: Number(argv['reload-every']),
};
if (!(opt.minutes > 0 && opt.minutes <= 120)) {
  console.error('soak: --minutes must be in (0, 120]');
  process.exit(2);
}
if (!existsSync(MAIN)) {
  console.error(`soak: ${MAIN} not found: run \`npm run build\` first (npm run soak does).`);
  process.exit(2);
}

const grpc = await import('@grpc/grpc-js');
const { loadProtos } = await import('../dist/src/grpc/proto.js');
const { PIN, startServerToFile, stopChild, memOf } = await import('./lib/procs.mjs');
const { corruptSignature, jwksJson, newEs256Key, signJwt } = await import('./lib/tokens.mjs');
const { Histogram } = await import('./lib/hist.mjs');
const { hardeningDocs } = await import('./lib/configs.mjs');
PIN.enabled = false; // a shared machine: no core pinning

const ISSUER = 'https://idp.soak.example';
const dir = mkdtempSync(join(tmpdir(), 'obo-authz-soak-'));
const cfgDir = join(dir, 'config');
mkdirSync(cfgDir);
const idpKey = newEs256Key('soak-idp');
const docs = hardeningDocs(dir, ISSUER, jwksJson(idpKey), { stsIssuer: 'https://sts.soak.example' });

/** The config, version `gen`: every version decides the probes the same way, plus `/gen-<gen>/*`. */
function config(gen) {
  return [
    `# soak config generation ${gen}\n${docs.settings}`,
    docs.ra,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-users, namespace: istio-system}
spec:
  action: ALLOW
  rules:
    - from: [{source: {requestPrincipals: ["*"]}}]
      to: [{operation: {paths: ["/api/*", "/ex/*", "/gen-${gen}/*"]}}]
`,
    docs.sts,
    `apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: exchanged, namespace: istio-system}
spec:
  match: {backends: [exchanged]}
  target: {audience: backend-x}
  sts: builtin
`,
  ].join('---\n');
}

let gen = 1;
function writeConfigAtomically() {
  const tmp = join(cfgDir, '.config.yaml.tmp');
  writeFileSync(tmp, config(gen));
  renameSync(tmp, join(cfgDir, 'config.yaml'));
}
writeConfigAtomically();

// Distinct tokens, signed before the run (the signing cost stays out of the measured time).
const nowS = Math.floor(Date.now() / 1000);
const tokens = [];
for (let i = 0; i < opt.tokens; i++) tokens.push(signJwt(idpKey, { iss: ISSUER, sub: `user-${i}`, jti: `j-${i}`, iat: nowS, exp: nowS + 4 * 3600 }));
let tokenIndex = 0;
const nextToken = () => tokens[tokenIndex++ % tokens.length];

const server = await startServerToFile('obo-authz', process.execPath, [MAIN, 'serve', '--config', cfgDir, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], join(dir, 'server.log'));
const { AuthorizationClient } = loadProtos();
const client = new AuthorizationClient(server.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 << 20 });

function request(path, { token, backend } = {}) {
  const headers = { ':method': 'GET', ':path': path, ':authority': 'api.soak.example', 'x-request-id': `soak-${Math.random().toString(36).slice(2)}` };
  if (token) headers.authorization = `Bearer ${token}`;
  return {
    attributes: {
      source: { address: { socket_address: { address: '10.1.2.3', port_value: 40000 } } },
      request: { http: { id: headers['x-request-id'], method: 'GET', path, host: 'api.soak.example', scheme: 'https', headers } },
      context_extensions: backend ? { backend } : {},
    },
  };
}

function check(req) {
  return new Promise((resolve, reject) => {
    client.Check(req, { deadline: Date.now() + 1000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

const reasonOf = (r) => r?.dynamic_metadata?.fields?.reason?.stringValue;
const authHeader = (r) => (r?.ok_response?.headers ?? []).find((h) => h.header.key === 'authorization')?.header.value;

/** The traffic classes: how to make a request and what its answer must be. */
const CLASSES = [
  { name: 'allowed', weight: 35, make: () => ({ req: request('/api/items', { token: nextToken() }) }), ok: (r) => r.status.code === 0 },
  { name: 'denied-rbac', weight: 15, make: () => ({ req: request('/admin/users', { token: nextToken() }) }), ok: (r) => r.denied_response?.status.code === 403 && reasonOf(r) === 'ERR_RBAC_DENIED' },
  { name: 'denied-anonymous', weight: 10, make: () => ({ req: request('/api/items') }), ok: (r) => r.denied_response?.status.code === 403 && reasonOf(r) === 'ERR_RBAC_DENIED' },
  {
    name: 'exchanged',
    weight: 20,
    make: () => {
      const token = nextToken();
      return { req: request('/ex/call', { token, backend: 'exchanged' }), token };
    },
    ok: (r, c) => r.status.code === 0 && typeof authHeader(r) === 'string' && authHeader(r).startsWith('Bearer ') && !authHeader(r).includes(c.token),
  },
  { name: 'bad-signature', weight: 15, make: () => ({ req: request('/api/items', { token: corruptSignature(nextToken()) }) }), ok: (r) => r.denied_response?.status.code === 401 && reasonOf(r) === 'ERR_JWT_SIGNATURE' },
  { name: 'non-canonical-path', weight: 5, make: () => ({ req: request('/api/../admin/users', { token: nextToken() }) }), ok: (r) => r.denied_response?.status.code === 400 && reasonOf(r) === 'ERR_PATH_NOT_CANONICAL' },
];
const totalWeight = CLASSES.reduce((a, c) => a + c.weight, 0);
const pick = () => {
  let x = Math.random() * totalWeight;
  for (const c of CLASSES) if ((x -= c.weight) < 0) return c;
  return CLASSES[0];
};

const stats = Object.fromEntries(CLASSES.map((c) => [c.name, { sent: 0, ok: 0, wrong: 0, rpcErrors: 0, hist: new Histogram() }]));
const wrongExamples = [];
const rpcErrorExamples = [];
const rss = [];
const t0 = Date.now();
const end = t0 + opt.minutes * 60_000;
let reloadsWritten = 0;
let reloadChecks = 0;
let reloadChecksFailed = 0;

// Sample RSS once a second.
const sampler = setInterval(() => {
  try {
    rss.push({ t: (Date.now() - t0) / 1000, mib: memOf(server.pid).rssMiB });
  } catch {
    /* exited */
  }
}, 1000);
rss.push({ t: 0, mib: memOf(server.pid).rssMiB });

// Hot reloads: a new generation written atomically every few seconds; a later probe of
// `/gen-<gen>/x` shows it took effect (the watcher waits for the files to settle first).
const reloader = setInterval(() => {
  gen++;
  reloadsWritten++;
  writeConfigAtomically();
  const g = gen;
  setTimeout(async () => {
    if (g !== gen) return;
    reloadChecks++;
    try {
      const r = await check(request(`/gen-${g}/x`, { token: nextToken() }));
      if (r.status.code !== 0) reloadChecksFailed++;
    } catch {
      reloadChecksFailed++;
    }
  }, Math.max(1000, Math.min(opt.reloadEverySec * 1000 - 1000, 8000)));
  server.truncateLog?.();
}, opt.reloadEverySec * 1000);

// The load: `concurrency` workers sharing a paced budget of `rate` requests per second.
const interval = 1000 / opt.rate;
let nextAt = performance.now();
async function worker() {
  while (Date.now() < end) {
    const now = performance.now();
    const wait = nextAt - now;
    nextAt = Math.max(nextAt, now) + interval;
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const c = pick();
    const made = c.make();
    const s = stats[c.name];
    s.sent++;
    const start = performance.now();
    try {
      const r = await check(made.req);
      s.hist.record((performance.now() - start) * 1000);
      if (c.ok(r, made)) s.ok++;
      else {
        s.wrong++;
        if (wrongExamples.length < 10) wrongExamples.push({ class: c.name, status: r.status, denied: r.denied_response?.status, reason: reasonOf(r) });
      }
    } catch (e) {
      s.rpcErrors++;
      if (rpcErrorExamples.length < 10) rpcErrorExamples.push({ class: c.name, code: e.code, message: String(e.message).slice(0, 200) });
    }
  }
}
console.log(`soak: ${opt.minutes} min against ${server.grpcAddress}, ${opt.rate} req/s, ${opt.concurrency} in flight, ${tokens.length} distinct tokens, a reload every ${opt.reloadEverySec} s`);
const progress = setInterval(() => {
  const sent = Object.values(stats).reduce((a, s) => a + s.sent, 0);
  const last = rss[rss.length - 1];
  console.log(`  ${Math.round((Date.now() - t0) / 1000)} s: ${sent} checks, RSS ${last?.mib.toFixed(1)} MiB, generation ${gen}`);
}, 60_000);
await Promise.all(Array.from({ length: opt.concurrency }, worker));
clearInterval(reloader);
clearInterval(progress);
clearInterval(sampler);
rss.push({ t: (Date.now() - t0) / 1000, mib: memOf(server.pid).rssMiB });

// Reloads the server counted (from its metrics) before it stops.
let reloadsApplied = null;
try {
  const m = await (await fetch(`http://${server.httpAddress}/metrics`)).text();
  reloadsApplied = Number(/obo_authz_config_reloads_total\{result="success"\} (\d+)/.exec(m)?.[1] ?? NaN);
} catch {
  /* unreachable */
}
client.close();
await server.stop();
rmSync(dir, { recursive: true, force: true });

// RSS: start, peak, end; the second half's range and least-squares slope.
const secs = (Date.now() - t0) / 1000;
const half = rss.filter((x) => x.t >= secs / 2);
const slope = (() => {
  const n = half.length;
  if (n < 2) return 0;
  const mx = half.reduce((a, x) => a + x.t, 0) / n;
  const my = half.reduce((a, x) => a + x.mib, 0) / n;
  const num = half.reduce((a, x) => a + (x.t - mx) * (x.mib - my), 0);
  const den = half.reduce((a, x) => a + (x.t - mx) ** 2, 0);
  return den === 0 ? 0 : (num / den) * 60; // MiB per minute
})();
const totals = Object.values(stats).reduce((a, s) => ({ sent: a.sent + s.sent, wrong: a.wrong + s.wrong, rpcErrors: a.rpcErrors + s.rpcErrors }), { sent: 0, wrong: 0, rpcErrors: 0 });
const result = {
  when: new Date().toISOString(),
  options: opt,
  seconds: Math.round(secs),
  checks: totals.sent,
  checksPerSecond: Math.round(totals.sent / secs),
  rpcErrors: totals.rpcErrors,
  wrongDecisions: totals.wrong,
  reloads: { written: reloadsWritten, appliedByServer: reloadsApplied, probesAfterReload: reloadChecks, probesFailed: reloadChecksFailed },
  rssMiB: {
    start: round(rss[0].mib),
    peak: round(Math.max(...rss.map((x) => x.mib))),
    end: round(rss[rss.length - 1].mib),
    secondHalf: { min: round(Math.min(...half.map((x) => x.mib))), max: round(Math.max(...half.map((x) => x.mib))), slopeMiBPerMinute: round(slope, 2) },
  },
  classes: Object.fromEntries(Object.entries(stats).map(([k, s]) => [k, { sent: s.sent, ok: s.ok, wrong: s.wrong, rpcErrors: s.rpcErrors, p50ms: round(s.hist.quantile(0.5) / 1000, 2), p99ms: round(s.hist.quantile(0.99) / 1000, 2) }])),
  wrongExamples,
  rpcErrorExamples,
};
function round(x, d = 1) {
  return Math.round(x * 10 ** d) / 10 ** d;
}
mkdirSync(dirname(argv.out), { recursive: true });
writeFileSync(argv.out, `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
console.log(
  `soak: ${result.checks} checks in ${result.seconds} s (${result.checksPerSecond}/s): ${result.rpcErrors} RPC errors, ${result.wrongDecisions} wrong decisions; ` +
    `${reloadsWritten} reloads written, ${reloadsApplied} applied; RSS start ${result.rssMiB.start} MiB, peak ${result.rssMiB.peak}, end ${result.rssMiB.end}, ` +
    `second half ${result.rssMiB.secondHalf.min}-${result.rssMiB.secondHalf.max} MiB (${result.rssMiB.secondHalf.slopeMiBPerMinute} MiB/min)`,
);
process.exit(result.rpcErrors === 0 && result.wrongDecisions === 0 && reloadChecksFailed === 0 ? 0 : 1);
