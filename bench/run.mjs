#!/usr/bin/env node
// `npm run bench`: the obo-authz benchmark (docs/benchmarks.md). Starts the real server
// (dist/, production build) with generated scenario configs, a no-op Check server on the
// same gRPC stack (baseline) and a plain node:http2 server (floor), drives them with
// h2load (one prebuilt gRPC frame per scenario) or bench/loadgen.mjs (distinct frames),
// interleaved in rounds so that every ratio compares runs made under the same machine
// conditions, and checks every scenario's decision before measuring it.
//
//   node bench/run.mjs [--quick] [--rounds N] [--duration S] [--warmup S]
//                      [--connections N] [--streams N] [--distinct N] [--memory-tokens N]
//                      [--only id,id] [--no-memory] [--no-pin] [--keep]
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const MAIN = join(root, 'dist', 'src', 'main.js');

const { values: argv } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string', default: '4' },
    streams: { type: 'string', default: '16' },
    distinct: { type: 'string', default: '25000' },
    'memory-tokens': { type: 'string' },
    'session-requests': { type: 'string' },
    'rss-bound': { type: 'string', default: '320' },
    only: { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    out: { type: 'string', default: join(here, 'results', 'latest.json') },
  },
});

if (!existsSync(MAIN)) {
  console.error(`bench: ${MAIN} not found: run \`npm run build\` first (npm run bench does).`);
  process.exit(2);
}
const { hasCommand, PIN, startServer, startServerToFile, stopChild, memOf, cpuTimes, cpuSecondsOf, machineInfo, run } = await import('./lib/procs.mjs');
if (!hasCommand('h2load')) {
  console.error('bench: h2load not found. Install it (Debian/Ubuntu): apt-get update && apt-get install -y nghttp2-client');
  process.exit(2);
}
const { checkRequestFrame, httpCheckRequest } = await import('./lib/grpc-frames.mjs');
const { corruptSignature, jwksJson, newEs256Key, newHs256Key, signJwt } = await import('./lib/tokens.mjs');
const C = await import('./lib/configs.mjs');
const { counterByLabel, gauges, probe, probeHttp, runH2load, runLoadgen, summarize } = await import('./lib/drivers.mjs');
const { Histogram } = await import('./lib/hist.mjs');

const quick = argv.quick;
const opt = {
  rounds: Number(argv.rounds ?? (quick ? 2 : 4)),
  durationSec: Number(argv.duration ?? (quick ? 3 : 4)),
  warmupSec: Number(argv.warmup ?? 1),
  connections: Number(argv.connections),
  streams: Number(argv.streams),
  distinct: Number(argv.distinct),
  memoryTokens: Number(argv['memory-tokens'] ?? (quick ? 100_000 : 1_000_000)),
  // Checks over distinct sessions in the session memory check (each one a local-cache miss and
  // a Redis read): far more than the server's caches hold, far fewer than the sessions stored.
  sessionRequests: Number(argv['session-requests'] ?? (quick ? 20_000 : 200_000)),
  rssBoundMiB: Number(argv['rss-bound']),
};
const ncpu = cpus().length;
PIN.enabled = !argv['no-pin'] && ncpu >= 2 && hasCommand('taskset', ['-V']);
const only = argv.only ? new Set(argv.only.split(',')) : null;
// This process only orchestrates (and drains the servers' log pipes): keep it off the server core.
if (PIN.enabled) spawnSync('taskset', ['-a', '-p', '-c', PIN.load, String(process.pid)], { stdio: 'ignore' });

const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const tmp = mkdtempSync(join(tmpdir(), 'obo-authz-bench-'));
const started = [];
let exitCode = 0;

async function cleanup() {
  await Promise.all(started.map((s) => stopChild(s.child)));
  if (!argv.keep) rmSync(tmp, { recursive: true, force: true });
}
process.on('SIGINT', async () => {
  await cleanup();
  process.exit(130);
});

// ------------------------------------------------------------------ keys, tokens, frames
const nowS = Math.floor(Date.now() / 1000);
const EXP = nowS + 6 * 3600;
const es = newEs256Key('bench-es256-1');
const hs = newHs256Key('bench-hs256-1');
const claims = (sub) => ({ iss: C.ISSUER, sub, aud: C.AUDIENCE, iat: nowS, exp: EXP, scope: 'mcp:tools mcp:resources', groups: ['bench-users'] });
const bearer = (t) => ({ authorization: `Bearer ${t}` });
const token1 = signJwt(es, claims('user-00000001'));

const frames = {};
function frameFile(name, buf) {
  const f = join(tmp, `${name}.bin`);
  writeFileSync(f, buf);
  frames[name] = { file: f, first: buf.subarray(0, 5 + buf.readUInt32BE(1)) };
  return f;
}
const reqFor = (ns, headers, extra = {}) =>
  httpCheckRequest({ method: 'POST', path: '/mcp', contextExtensions: { namespace: ns, ...extra }, headers: { 'content-type': 'application/json', ...headers } });

frameFile('s1', checkRequestFrame(reqFor('bench', bearer(token1))));
frameFile('s3', checkRequestFrame(reqFor(C.nsName(42), bearer(token1))));
frameFile('s6a', checkRequestFrame(reqFor('bench', {})));
frameFile('s6b', checkRequestFrame(reqFor('bench', bearer(corruptSignature(token1)))));
// scenario 2 (and 5): distinct ES256 tokens, one frame each, concatenated
log(`minting ${opt.distinct} distinct ES256 tokens`);
const distinctTokens = [];
for (let i = 0; i < opt.distinct; i++) distinctTokens.push(signJwt(es, claims(`user-${String(i).padStart(8, '0')}`)));
frameFile('s2', Buffer.concat(distinctTokens.map((t) => checkRequestFrame(reqFor('bench', bearer(t))))));
writeFileSync(join(tmp, 'tokens.txt'), distinctTokens.join('\n'));
// exchange scenarios: same requests, routed to the `mcp-tools` backend
frameFile('s4', checkRequestFrame(reqFor('bench', bearer(token1), { backend: 'mcp-tools' })));
// MCP (issue 13), scenario 8: a tools/call of 4 KiB built as the MCP SDK sends it, and the same Check without a body
const mcpCall = (pad) => JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search', arguments: { query: 'weather in Paris', context: pad } } });
const mcpBody = mcpCall('x'.repeat(4096 - mcpCall('').length));
const mcpReq = (body, extra) => {
  const r = httpCheckRequest({ method: 'POST', path: '/mcp', contextExtensions: { namespace: 'mcpbench' }, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...bearer(token1), ...extra } });
  if (body !== undefined) {
    r.attributes.request.http.body = body;
    r.attributes.request.http.headers['x-envoy-auth-partial-body'] = 'false';
  }
  return r;
};
frameFile('s8', checkRequestFrame(mcpReq(mcpBody, {})));
frameFile('s8n', checkRequestFrame(mcpReq(undefined, { 'x-bench-nobody': '1' })));
frameFile('s5', Buffer.concat(distinctTokens.map((t) => checkRequestFrame(reqFor('bench', bearer(t), { backend: 'mcp-tools' })))));

// browser sessions (OIDCLogin): the same request with a session cookie instead of a bearer token
const S = await import('./lib/sessions.mjs');
const { SessionKeys } = await import(join(root, 'dist', 'src', 'session', 'keys.js'));
const { Redis } = await import('ioredis');
const sessionKeyB64 = randomBytes(32).toString('base64');
const sessionKeys = new SessionKeys([Buffer.from(sessionKeyB64, 'base64')]);
// Serving a session never re-verifies its id token (it was verified at login): an id token of
// the right shape and claims is enough here, and cheap to make a million times.
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const idTokenFor = (sub) => `${b64({ alg: 'ES256', kid: es.kid })}.${b64({ ...claims(sub), aud: 'bench' })}.bench-signature`;
const sessionFor = (i) => S.sessionRecord({ sid: S.sessionSid(i), issuer: C.ISSUER, sub: `user-${String(i).padStart(8, '0')}`, idToken: idTokenFor(`user-${String(i).padStart(8, '0')}`), accessToken: token1, nowMs: Date.now() });
frameFile('s7c', checkRequestFrame(reqFor('bench', { cookie: `${S.SESSION_COOKIE}=${sessionKeys.seal(JSON.stringify(sessionFor(0)))}` })));
frameFile('s7r', checkRequestFrame(reqFor('bench', { cookie: `${S.SESSION_COOKIE}=${S.sessionSid(0)}` })));
const sessionConfig = (name, redis) =>
  C.writeConfig(join(tmp, name), {
    '00-settings.yaml': C.settingsYaml(),
    '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
    '20-policies.yaml': C.tenPolicies('bench'),
    '40-login.yaml': S.loginYaml({ issuer: C.ISSUER, appUrl: 'https://mcp.example.com', redisPort: redis?.port }),
    'client-secret': 'bench-client-secret',
    'session.key': sessionKeyB64,
    ...(redis ? { 'redis-password': redis.password } : {}),
  });

// ------------------------------------------------------------------ configs
const cfgA = C.writeConfig(join(tmp, 'cfg-a'), {
  '00-settings.yaml': C.settingsYaml(),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
  '20-policies.yaml': C.tenPolicies('bench'),
});
const cfgALog = C.writeConfig(join(tmp, 'cfg-a-log1pct'), {
  '00-settings.yaml': C.settingsYaml('  decisionLog:\n    allowSampleRate: 0.01\n'),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
  '20-policies.yaml': C.tenPolicies('bench'),
});
// scenario 1 over HTTP with the HTTP/1.1 fast path off (node:http reads every request)
const cfgANode = C.writeConfig(join(tmp, 'cfg-a-node'), {
  '00-settings.yaml': C.settingsYaml('  httpAuthz:\n    http1FastPath: false\n'),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
  '20-policies.yaml': C.tenPolicies('bench'),
});
const cfgC = C.writeConfig(join(tmp, 'cfg-c'), {
  '00-settings.yaml': C.settingsYaml(),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
  '20-policies.yaml': C.thousandPolicies(),
});
const cfgMcp = C.writeConfig(join(tmp, 'cfg-mcp'), {
  '00-settings.yaml': C.settingsYaml(),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
  '20-mcp.yaml': C.mcpBenchYaml('mcpbench'),
});
const cfgM = C.writeConfig(join(tmp, 'cfg-m'), {
  '00-settings.yaml': C.settingsYaml(),
  '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(hs)),
  '20-policies.yaml': C.tenPolicies('bench'),
});

function validate(dir) {
  const r = spawnSync(process.execPath, [MAIN, 'validate', '--config', dir], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

// ------------------------------------------------------------------ scenarios
const HL = 'h2load';
const H1 = 'h2load-h1';
const NODE = 'node';
// The HTTP authorization transport: scenario 1's request as Envoy's http_service sends it
// (path_prefix /envoy with the context, the original method and headers, no body).
const httpCheck = {
  path: '/envoy;namespace=bench/mcp',
  // POST with no body, as Envoy sends the original POST (h2load cannot send an empty -d file)
  headers: [':method: POST', 'content-type: application/json', `authorization: Bearer ${token1}`, 'x-request-id: bench-1'],
};
const scenarios = [
  { id: 'base-h2', title: 'floor: plain node:http2, constant pre-encoded reply', server: 'h2', tool: HL, frame: 's1', expect: { kind: 'allow' } },
  { id: 'base-grpc', title: 'baseline: no-op Check on grpc-js', server: 'grpc', tool: HL, frame: 's1', expect: { kind: 'allow' } },
  { id: 's1', title: '1 allow: repeated JWT, 10 policies', server: 'A', tool: HL, frame: 's1', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's1-log1pct', title: '1 with decision log sampled at 1% of allows', server: 'ALog', tool: HL, frame: 's1', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's1-lean', title: '1 on a lean transport (node:http2 + protobufjs, no grpc-js; experiment)', server: 'Lean', tool: HL, frame: 's1', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's3', title: '3 allow: 1,000 policies in 100 namespaces', server: 'C', tool: HL, frame: 's3', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's4', title: '4 allow: token exchange, cache hit', server: 'E', tool: HL, frame: 's4', expect: { kind: 'allow', headers: ['authorization'] }, exchange: true },
  { id: 's7c', title: '7c allow: browser session sealed in the cookie (OIDCLogin)', server: 'S', tool: HL, frame: 's7c', expect: { kind: 'allow', headers: ['authorization'] } },
  { id: 's7r', title: '7r allow: browser session in Redis (local cache 1 s)', server: 'R', tool: HL, frame: 's7r', expect: { kind: 'allow', headers: ['authorization'] } },
  { id: 's8n', title: '8 MCP POST /mcp without a body (baseline of 8)', server: 'MCP', tool: HL, frame: 's8n', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's8', title: '8 MCP tools/call with a 4 KiB JSON-RPC body (request.mcp.tool rule)', server: 'MCP', tool: HL, frame: 's8', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's6a', title: '6a deny: no token (403)', server: 'A', tool: HL, frame: 's6a', expect: { kind: 'deny', http: 403 } },
  { id: 's6b', title: '6b deny: bad signature (401)', server: 'A', tool: HL, frame: 's6b', expect: { kind: 'deny', http: 401 } },
  { id: 'base-http', title: 'floor: no-op node:http answering 200 (HTTP/1.1 keep-alive)', server: 'http', tool: H1, expect: { kind: 'allow' } },
  // HTTP scenarios each on a server that serves only them (as behind nginx or Traefik), except
  // http-s1-mixed: the server of scenarios 1, 2 and 6, which also answers gRPC Checks.
  { id: 'http-s1', title: '1 over the HTTP transport (Envoy http_service convention, HTTP/1.1 keep-alive)', server: 'AHttp', tool: H1, expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 'http-s1-node', title: '1 over the HTTP transport with the HTTP/1.1 fast path off (node:http)', server: 'ANode', tool: H1, expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 'http-s1-log1pct', title: '1 over the HTTP transport, decision log sampled at 1% of allows', server: 'ALogHttp', tool: H1, expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 'http-s1-mixed', title: '1 over the HTTP transport on the server that also answers the gRPC scenarios 1, 2 and 6', server: 'A', tool: H1, expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 'base-grpc-node', title: 'baseline: no-op Check on grpc-js (node loadgen)', server: 'grpc', tool: NODE, frame: 's1', expect: { kind: 'allow' } },
  { id: 's2', title: `2 allow: ${opt.distinct.toLocaleString('en')} distinct ES256 JWTs`, server: 'A', tool: NODE, frame: 's2', expect: { kind: 'allow', headers: ['x-user-sub'] } },
  { id: 's5', title: '5 allow: token exchange, cache miss (loopback STS)', server: 'E', tool: NODE, frame: 's5', expect: { kind: 'allow', headers: ['authorization'] }, exchange: true },
  { id: 'raw-verify', title: 'raw ES256 verification (crypto.verify / jose), server core', tool: 'raw' },
].filter((s) => !only || only.has(s.id) || s.id.startsWith('base') || (only.has('s2') && s.id === 'raw-verify'));

const skipped = {};
// scenario id -> rounds measured again after a machine stall
const stalls = {};
const servers = {};
async function serve(name, cfgDir) {
  const logPath = join(tmp, `${name.replace(/[^a-z0-9]+/gi, '-')}.log`);
  const s = await startServerToFile(name, process.execPath, [MAIN, 'serve', '--config', cfgDir, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', '--http-authz-address', '127.0.0.1:0'], logPath);
  started.push(s);
  return s;
}

try {
  log(`machine: ${machineInfo()} x${ncpu}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, node ${process.version}; pinning ${PIN.enabled ? `servers->cpu${PIN.server}, load->cpu${PIN.load}` : 'off'}`);
  const need = new Set(scenarios.map((s) => s.server).filter(Boolean));
  if (need.has('grpc')) servers.grpc = await startServer('baseline-grpc', process.execPath, [join(here, 'baseline-server.mjs'), '--mode', 'grpc']);
  if (need.has('h2')) servers.h2 = await startServer('baseline-h2', process.execPath, [join(here, 'baseline-server.mjs'), '--mode', 'h2']);
  if (need.has('http')) servers.http = await startServer('baseline-http', process.execPath, [join(here, 'baseline-server.mjs'), '--mode', 'http']);
  started.push(...[servers.grpc, servers.h2, servers.http].filter(Boolean));
  if (need.has('A')) servers.A = await serve('obo-authz (10 policies)', cfgA);
  if (need.has('AHttp')) servers.AHttp = await serve('obo-authz (10 policies, HTTP only)', cfgA);
  if (need.has('ALogHttp')) servers.ALogHttp = await serve('obo-authz (10 policies, log 1%, HTTP only)', cfgALog);
  if (need.has('ANode')) servers.ANode = await serve('obo-authz (10 policies, HTTP/1.1 fast path off)', cfgANode);
  if (need.has('ALog')) servers.ALog = await serve('obo-authz (10 policies, log 1%)', cfgALog);
  if (need.has('Lean')) {
    servers.Lean = await startServerToFile('lean transport (experiment)', process.execPath, [join(here, 'lean-server.mjs'), '--config', cfgA], join(tmp, 'lean.log'));
    started.push(servers.Lean);
  }
  if (need.has('C')) servers.C = await serve('obo-authz (1,000 policies)', cfgC);
  if (need.has('S')) servers.S = await serve('obo-authz (cookie sessions)', sessionConfig('cfg-s', null));
  if (need.has('R') || (!argv['no-memory'] && (!only || only.has('memory')))) {
    servers.redis = await S.startRedis(join(tmp, 'redis'), PIN.load);
    started.push(servers.redis);
    await S.writeSessions({ Redis, keys: sessionKeys, port: servers.redis.port, password: servers.redis.password, from: 0, to: 1, record: sessionFor });
    if (need.has('R')) servers.R = await serve('obo-authz (Redis sessions)', sessionConfig('cfg-r', servers.redis));
  }
  if (need.has('MCP')) servers.MCP = await serve('obo-authz (MCP)', cfgMcp);
  if (need.has('E')) {
    const sts = await startServer('sts-stub', process.execPath, [join(here, 'sts-stub.mjs')], { core: PIN.load });
    started.push(sts);
    servers.sts = sts;
    const cfgE = C.writeConfig(join(tmp, 'cfg-e'), {
      '00-settings.yaml': C.settingsYaml(),
      '10-ra.yaml': C.requestAuthenticationYaml(jwksJson(es)),
      '20-policies.yaml': C.tenPolicies('bench'),
      '30-exchange.yaml': C.exchangeYaml(`http://${sts.info.stsAddress}/oauth2/token`),
    });
    const v = validate(cfgE);
    if (!v.ok) {
      for (const s of scenarios) if (s.exchange) skipped[s.id] = `exchange config not accepted by this build: ${v.out.split('\n')[0]}`;
      log(`exchange scenarios skipped: ${v.out}`);
    } else servers.E = await serve('obo-authz (token exchange)', cfgE);
  }

  // --------------------------------------------------------------- decision checks
  for (const s of scenarios) {
    if (s.tool === 'raw' || skipped[s.id]) continue;
    const srv = servers[s.server];
    let sum;
    try {
      sum = s.tool === H1 ? await probeHttp(srv.info.httpAuthzAddress, httpCheck) : summarize(await probe(srv.grpcAddress, frames[s.frame].first));
    } catch (e) {
      sum = { kind: 'probe-failed', reason: String(e) };
    }
    const e = s.expect;
    const problems = [];
    if (sum.kind !== e.kind) problems.push(`expected ${e.kind}, got ${sum.kind}`);
    if (e.http && sum.http !== e.http) problems.push(`expected HTTP ${e.http}, got ${sum.http}`);
    for (const h of e.headers ?? []) if (s.server !== 'grpc' && s.server !== 'h2' && !(sum.headers ?? []).includes(h)) problems.push(`expected upstream header ${h} to be set`);
    s.probe = sum;
    if (problems.length) {
      skipped[s.id] = `WRONG DECISION: ${problems.join('; ')} (reason ${sum.reason || '-'}${sum.body ? `, body ${JSON.stringify(sum.body)}` : ''})`;
      log(`!! ${s.id}: ${skipped[s.id]}`);
      exitCode = 1;
    } else log(`ok ${s.id}: ${sum.kind}${sum.http && sum.kind !== 'allow' ? ` ${sum.http}` : ''} ${sum.reason}`);
  }

  // --------------------------------------------------------------- rounds
  const results = Object.fromEntries(scenarios.map((s) => [s.id, []]));
  const nextIndex = {};
  const cpu0 = cpuTimes();
  for (let r = 0; r < opt.rounds; r++) {
    log(`round ${r + 1}/${opt.rounds}`);
    for (const s of scenarios) {
      if (skipped[s.id]) continue;
      for (let attempt = 0; ; attempt++) {
        const common = { durationSec: opt.durationSec, warmupSec: opt.warmupSec, connections: opt.connections, streams: opt.streams };
        let m;
        if (s.tool === 'raw') {
          const spec = join(tmp, 'raw.json');
          writeFileSync(spec, JSON.stringify({ tokensFile: join(tmp, 'tokens.txt'), jwk: es.publicJwk, issuer: C.ISSUER, audiences: [C.AUDIENCE], seconds: Math.max(1, opt.durationSec / 2) }));
          const out = await run(process.execPath, [join(here, 'raw-verify.mjs'), spec], { core: PIN.server });
          if (out.code !== 0) throw new Error(`raw-verify failed: ${out.stderr}`);
          m = JSON.parse(out.stdout.trim());
          log(`  ${s.id}: crypto.verify ${m.cryptoVerifyPerSec.toFixed(0)}/s, jose ${m.joseVerifyPerSec.toFixed(0)}/s`);
          results[s.id].push(m);
          break;
        }
        const srv = servers[s.server];
        const pid = srv.pid;
        // server CPU over the measured window only (from the end of the warm-up to the end)
        let cpuBefore = NaN;
        const cpuTimer = setTimeout(() => (cpuBefore = cpuSecondsOf(pid)), (opt.warmupSec + 0.05) * 1000);
        const verBefore = srv.httpAddress ? await counterByLabel(srv.httpAddress, 'obo_authz_jwt_verifications_total', 'result') : {};
        const stsBefore = s.server === 'E' ? servers.sts.lastJson('stsExchanges')?.stsExchanges ?? 0 : 0;
        if (s.tool === H1) {
          // one Check in flight per connection, as a proxy's pool sends them: as many connections as h2load has streams
          m = await runH2load({ target: srv.info.httpAuthzAddress, ...common, connections: opt.connections * opt.streams, tmpDir: tmp, tag: s.id, http: httpCheck });
        } else if (s.tool === HL) {
          m = await runH2load({ target: srv.grpcAddress, frameFile: frames[s.frame].file, ...common, tmpDir: tmp, tag: s.id });
        } else {
          const spec = { target: srv.grpcAddress, framesFile: frames[s.frame].file, ...common, expect: s.expect.kind, expectHttp: s.expect.http, timeoutHeader: '1000m', startIndex: nextIndex[s.id] ?? 0 };
          const j = await runLoadgen(spec, tmp, s.id);
          // the next round continues the cycle where this one stopped: with more distinct
          // tokens than the verified-token cache holds, no token is ever a cache hit
          nextIndex[s.id] = (nextIndex[s.id] ?? 0) + j.sent;
          m = { ...j, hist: Histogram.fromJSON(j.hist) };
          if (j.mismatches || j.errors) {
            log(`!! ${s.id}: ${j.mismatches} wrong decisions, ${j.errors} errors (first: ${j.firstProblem})`);
            exitCode = 1;
          }
        }
        clearTimeout(cpuTimer);
        m.serverCpuSec = cpuSecondsOf(pid) - cpuBefore;
        if (srv.httpAddress) {
          const verAfter = await counterByLabel(srv.httpAddress, 'obo_authz_jwt_verifications_total', 'result');
          m.jwt = Object.fromEntries(Object.keys(verAfter).map((k) => [k, verAfter[k] - (verBefore[k] ?? 0)]));
        }
        if (s.server === 'E') {
          await new Promise((res) => setTimeout(res, 1100));
          m.stsExchanges = (servers.sts.lastJson('stsExchanges')?.stsExchanges ?? 0) - stsBefore;
        }
        srv.truncateLog?.();
        // A round that completed no Check, or whose median Check took longer than the 1 s gRPC deadline
        // every request carries (the server answers DEADLINE_EXCEEDED by then), saw the machine stop
        // (co-tenants on a shared host), not the server: measure it again (at most twice) and count it.
        if ((m.requests === 0 || m.p50us > 1_000_000) && attempt < 2) {
          stalls[s.id] = (stalls[s.id] ?? 0) + 1;
          log(`  ${s.id.padEnd(15)} stalled (${m.requests} Checks, p50 ${(m.p50us / 1000).toFixed(0)} ms, server CPU ${m.serverCpuSec.toFixed(2)} s): measuring the round again`);
          continue;
        }
        results[s.id].push(m);
        log(`  ${s.id.padEnd(15)} ${m.rps.toFixed(0).padStart(7)} req/s  p50 ${(m.p50us / 1000).toFixed(2)} ms  p99 ${(m.p99us / 1000).toFixed(2)} ms${m.errors ? `  errors ${m.errors}` : ''}`);
        break;
      }
    }
  }
  const cpu1 = cpuTimes();
  // RSS of every server after the rounds (context for the memory check)
  const rssAfterRounds = {};
  for (const [k, srv] of Object.entries(servers)) {
    try {
      rssAfterRounds[k] = +memOf(srv.pid).rssMiB.toFixed(1);
    } catch {
      /* exited */
    }
  }
  const stealPct = ((cpu1.steal - cpu0.steal) / Math.max(1, cpu1.total - cpu0.total)) * 100;

  // --------------------------------------------------------------- memory
  let memory = null;
  let sessionMemory = null;
  if (!argv['no-memory'] && (!only || only.has('memory'))) {
    try {
      memory = await memoryCheck();
    } catch (e) {
      exitCode = 1;
      memory = { skipped: `memory check failed: ${String(e instanceof Error ? e.message : e).split('\n').slice(0, 3).join(' ')}` };
      log(`!! ${memory.skipped}`);
    }
    try {
      sessionMemory = await sessionMemoryCheck();
    } catch (e) {
      exitCode = 1;
      sessionMemory = { skipped: `session memory check failed: ${String(e instanceof Error ? e.message : e).split('\n').slice(0, 3).join(' ')}` };
      log(`!! ${sessionMemory.skipped}`);
    }
  }

  // --------------------------------------------------------------- report
  const report = summarizeAll(scenarios, results, memory, stealPct, sessionMemory);
  report.rssAfterRoundsMiB = rssAfterRounds;
  mkdirSync(dirname(argv.out), { recursive: true });
  writeFileSync(argv.out, `${JSON.stringify(report, null, 2)}\n`);
  printReport(report);
  log(`results written to ${argv.out}`);
  if (report.targets.some((t) => t.met === false)) log('some targets are not met (see the table); the benchmark itself ran correctly');
} catch (e) {
  console.error(e instanceof Error ? e.stack : e);
  exitCode = 2;
} finally {
  await cleanup();
}
process.exit(exitCode);

// ==================================================================== helpers

/** Sample a server's memory every second (and drain its log file) until the timer is cleared. */
function sampleRss(srv) {
  const samples = [];
  const t0 = Date.now();
  const timer = setInterval(() => {
    try {
      samples.push({ t: (Date.now() - t0) / 1000, ...memOf(srv.pid) });
      srv.truncateLog();
    } catch {
      /* exited */
    }
  }, 1000);
  return { samples, timer };
}

async function memoryCheck() {
  const n = opt.memoryTokens;
  log(`memory check: ${n.toLocaleString('en')} distinct HS256 tokens through a fresh server`);
  const srv = await serve('obo-authz (memory)', cfgM);
  // template frame: a placeholder token of exactly the generated tokens' length
  const claimsM = { iss: C.ISSUER, aud: C.AUDIENCE, iat: nowS, exp: EXP, scope: 'mcp:tools mcp:resources' };
  const placeholder = signJwt(hs, { ...claimsM, sub: `user-${'0'.repeat(10)}` });
  const template = checkRequestFrame(reqFor('bench', bearer(placeholder)));
  const offset = template.indexOf(Buffer.from(placeholder, 'latin1'));
  if (offset < 0) throw new Error('memory check: placeholder token not found in the frame');
  const sample = summarize(await probe(srv.grpcAddress, template));
  if (sample.kind !== 'allow') {
    exitCode = 1;
    const why = `WRONG DECISION for the HS256 token: ${sample.kind} ${sample.http} ${sample.reason}`;
    log(`!! memory: ${why}`);
    await stopChild(srv.child);
    return { skipped: why };
  }
  await new Promise((r) => setTimeout(r, 500));
  const before = memOf(srv.pid);
  const { samples, timer } = sampleRss(srv);
  const spec = {
    target: srv.grpcAddress,
    connections: opt.connections,
    streams: opt.streams,
    maxRequests: n,
    expect: 'allow',
    timeoutHeader: '1000m',
    generator: { kind: 'hs256-seq', templateB64: template.toString('base64'), offset, tokenLength: placeholder.length, secretB64: hs.secret.toString('base64'), kid: hs.kid, claims: claimsM, start: 1 },
  };
  const j = await runLoadgen(spec, tmp, 'memory');
  clearInterval(timer);
  const after = memOf(srv.pid);
  await new Promise((r) => setTimeout(r, 3000));
  const settled = memOf(srv.pid);
  const jwt = await counterByLabel(srv.httpAddress, 'obo_authz_jwt_verifications_total', 'result');
  // where the RSS is: V8 heap vs memory outside it (Buffers)
  const g = await gauges(srv.httpAddress, ['obo_authz_nodejs_heap_size_used_bytes', 'obo_authz_nodejs_heap_size_total_bytes', 'obo_authz_nodejs_external_memory_bytes']);
  const heap = {
    heapUsedMiB: +((g.obo_authz_nodejs_heap_size_used_bytes ?? NaN) / 2 ** 20).toFixed(1),
    heapTotalMiB: +((g.obo_authz_nodejs_heap_size_total_bytes ?? NaN) / 2 ** 20).toFixed(1),
    externalMiB: +((g.obo_authz_nodejs_external_memory_bytes ?? NaN) / 2 ** 20).toFixed(1),
  };
  await stopChild(srv.child);
  if (j.mismatches || j.errors) {
    exitCode = 1;
    log(`!! memory: ${j.mismatches} wrong decisions, ${j.errors} errors (first: ${j.firstProblem}); GOAWAYs ${JSON.stringify(j.goaways)}, reconnects ${j.reconnects}\n${srv.tail().slice(-8).join('\n')}`);
  }
  // RSS at 10% of the run vs at the end: a bounded cache plateaus, a leak keeps growing.
  const at = (frac) => samples[Math.min(samples.length - 1, Math.floor(samples.length * frac))]?.rssMiB ?? NaN;
  const res = {
    tokens: n,
    requests: j.requests,
    rps: j.rps,
    wrongDecisions: j.mismatches,
    errors: j.errors,
    goaways: j.goaways,
    reconnects: j.reconnects,
    jwtVerifications: jwt,
    heapAtEnd: heap,
    rssStartMiB: before.rssMiB,
    rssAt10pctMiB: at(0.1),
    rssAt50pctMiB: at(0.5),
    rssEndMiB: after.rssMiB,
    rssAfter3sMiB: settled.rssMiB,
    peakRssMiB: Math.max(after.hwmMiB, ...samples.map((s) => s.rssMiB)),
    boundMiB: opt.rssBoundMiB,
    samples: samples.filter((_, i) => i % 5 === 0).map((s) => [Math.round(s.t), Math.round(s.rssMiB)]),
  };
  // bounded caches: RSS must stay under the bound, and stop growing in the second half
  res.growthSecondHalfMiB = res.rssEndMiB - res.rssAt50pctMiB;
  res.boundHolds = res.peakRssMiB <= opt.rssBoundMiB && res.growthSecondHalfMiB <= opt.rssBoundMiB / 8;
  log(`  memory: ${j.requests} requests at ${j.rps.toFixed(0)}/s; RSS ${before.rssMiB.toFixed(0)} -> ${after.rssMiB.toFixed(0)} MiB, peak ${res.peakRssMiB.toFixed(0)} MiB (bound ${opt.rssBoundMiB} MiB)`);
  return res;
}

/**
 * RSS of a fresh server while it serves `n` distinct browser sessions kept in Redis (every
 * Check a local-cache miss and a Redis read): the server's own caches must stay bounded.
 */
async function sessionMemoryCheck() {
  const n = opt.memoryTokens;
  const redis = servers.redis;
  log(`session memory check: writing ${n.toLocaleString('en')} sessions into Redis, then ${Math.min(n, opt.sessionRequests).toLocaleString('en')} Checks over distinct ones`);
  const w = await S.writeSessions({ Redis, keys: sessionKeys, port: redis.port, password: redis.password, from: 1, to: n + 1, record: sessionFor });
  const srv = await serve('obo-authz (session memory)', sessionConfig('cfg-rm', redis));
  const placeholder = S.sessionSid(1);
  const template = checkRequestFrame(reqFor('bench', { cookie: `${S.SESSION_COOKIE}=${placeholder}` }));
  const offset = template.indexOf(Buffer.from(placeholder, 'latin1'));
  const sample = summarize(await probe(srv.grpcAddress, template));
  if (sample.kind !== 'allow') {
    exitCode = 1;
    await stopChild(srv.child);
    return { skipped: `WRONG DECISION for a Redis session: ${sample.kind} ${sample.http} ${sample.reason}` };
  }
  const before = memOf(srv.pid);
  const { samples, timer } = sampleRss(srv);
  const j = await runLoadgen(
    { target: srv.grpcAddress, connections: opt.connections, streams: opt.streams, maxRequests: Math.min(n, opt.sessionRequests), expect: 'allow', timeoutHeader: '1000m', generator: { kind: 'sid-seq', templateB64: template.toString('base64'), offset, start: 1 } },
    tmp,
    'session-memory',
  );
  clearInterval(timer);
  const after = memOf(srv.pid);
  await stopChild(srv.child);
  if (j.mismatches || j.errors) {
    exitCode = 1;
    log(`!! session memory: ${j.mismatches} wrong decisions, ${j.errors} errors (first: ${j.firstProblem})`);
  }
  const at = (frac) => samples[Math.min(samples.length - 1, Math.floor(samples.length * frac))]?.rssMiB ?? NaN;
  const res = {
    sessions: n,
    redisUsedMemoryMiB: +w.usedMemoryMiB.toFixed(0),
    requests: j.requests,
    rps: j.rps,
    wrongDecisions: j.mismatches,
    errors: j.errors,
    rssStartMiB: before.rssMiB,
    rssAt50pctMiB: at(0.5),
    rssEndMiB: after.rssMiB,
    peakRssMiB: Math.max(after.hwmMiB, ...samples.map((s) => s.rssMiB)),
    boundMiB: opt.rssBoundMiB,
  };
  log(`  session memory: ${j.requests} requests at ${j.rps.toFixed(0)}/s over ${n} sessions (Redis ${res.redisUsedMemoryMiB} MiB); server RSS ${before.rssMiB.toFixed(0)} -> ${after.rssMiB.toFixed(0)} MiB, peak ${res.peakRssMiB.toFixed(0)} MiB`);
  return res;
}

function median(xs) {
  const a = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!a.length) return NaN;
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

function summarizeAll(scenarios, results, memory, stealPct, sessionMemory) {
  const rows = [];
  const byId = {};
  for (const s of scenarios) {
    const rs = results[s.id] ?? [];
    if (s.tool === 'raw') {
      byId[s.id] = {
        id: s.id,
        title: s.title,
        rounds: rs,
        cryptoVerifyPerSec: median(rs.map((x) => x.cryptoVerifyPerSec)),
        joseVerifyPerSec: median(rs.map((x) => x.joseVerifyPerSec)),
        verifierPerSec: median(rs.map((x) => x.verifierPerSec)),
        // per round, the server's verifier over raw crypto.verify measured in the same process;
        // not a result at all if the verifier rejected a valid token or answered from a cache
        verifierVsRaw: rs.some((x) => x.verifierBad > 0) ? NaN : median(rs.map((x) => x.verifierPerSec / x.cryptoVerifyPerSec)),
        verifierBad: rs.reduce((a, x) => a + (x.verifierBad ?? 0), 0),
      };
      continue;
    }
    const h = new Histogram();
    for (const m of rs) if (m.hist) h.merge(m.hist);
    const row = {
      id: s.id,
      title: s.title,
      tool: s.tool,
      skipped: skipped[s.id],
      probe: s.probe,
      // rounds measured again because the machine stalled (see the rounds loop)
      stalledRounds: stalls[s.id] ?? 0,
      rps: median(rs.map((m) => m.rps)),
      p50ms: h.n ? h.quantile(0.5) / 1000 : NaN,
      p99ms: h.n ? h.quantile(0.99) / 1000 : NaN,
      errors: rs.reduce((a, m) => a + (m.errors ?? 0) + (m.mismatches ?? 0), 0),
      serverCpuPerReqUs: median(rs.map((m) => (m.serverCpuSec / m.requests) * 1e6)),
      rounds: rs.map(({ hist, ...m }) => ({ ...m, rps: Math.round(m.rps), p50us: Math.round(m.p50us), p99us: Math.round(m.p99us) })),
    };
    byId[s.id] = row;
    rows.push(row);
  }
  // per-round ratios (same machine conditions), then the median
  const ratio = (a, b, f = (x) => x.rps) => {
    const ra = results[a] ?? [];
    const rb = results[b] ?? [];
    const n = Math.min(ra.length, rb.length);
    if (!n || skipped[a] || skipped[b]) return NaN;
    return median(Array.from({ length: n }, (_, i) => f(ra[i]) / rb[i].rps));
  };
  // CPU-normalized: baseline server CPU per request / scenario server CPU per request, i.e.
  // the throughput ratio both would reach with the server core saturated. Much less
  // sensitive to a disturbed load generator than req/s (reported next to it).
  const cpuRatio = (a, b) => {
    const ra = results[a] ?? [];
    const rb = results[b] ?? [];
    const n = Math.min(ra.length, rb.length);
    if (!n || skipped[a] || skipped[b]) return NaN;
    const per = (m) => m.serverCpuSec / m.requests;
    return median(Array.from({ length: n }, (_, i) => per(rb[i]) / per(ra[i])));
  };
  for (const row of rows) {
    const base = row.tool === 'node' ? 'base-grpc-node' : row.tool === H1 ? 'base-http' : 'base-grpc';
    row.vsBaseline = row.id === base || row.id === 'base-h2' ? (row.id === 'base-h2' ? NaN : 1) : ratio(row.id, base);
    row.cpuVsBaseline = row.id === base || row.id === 'base-h2' ? (row.id === 'base-h2' ? NaN : 1) : cpuRatio(row.id, base);
  }
  if (byId['base-grpc']) byId['base-grpc'].vsFloor = ratio('base-grpc', 'base-h2');
  // scenario 2: real signature verifications per second (from the server's own counter)
  const s2 = results['s2'] ?? [];
  const verFrac = (m) => {
    const ok = m.jwt?.ok ?? NaN;
    const cached = m.jwt?.cached ?? 0;
    return Number.isFinite(ok) && ok + cached > 0 ? ok / (ok + cached) : NaN;
  };
  const raw = results['raw-verify'] ?? [];
  const verPerSec = median(s2.map((m) => m.rps * verFrac(m)));
  const verVsRaw = raw.length && s2.length ? median(s2.slice(0, raw.length).map((m, i) => (m.rps * verFrac(m)) / raw[i].cryptoVerifyPerSec)) : NaN;
  // net verification cost: per-request time of scenario 2 minus that of the no-op baseline
  // driven the same way; its inverse is the verification rate net of the gRPC stack.
  const netVer = s2.length && (results['base-grpc-node'] ?? []).length
    ? median(s2.map((m, i) => 1 / (1 / m.rps - 1 / results['base-grpc-node'][Math.min(i, results['base-grpc-node'].length - 1)].rps)))
    : NaN;
  const targets = [
    { name: 'scenario 1 >= 0.85 x baseline', value: ratio('s1', 'base-grpc'), cpu: cpuRatio('s1', 'base-grpc'), min: 0.85 },
    { name: 'scenario 1 over HTTP/1.1 >= 0.8 x no-op node:http', value: ratio('http-s1', 'base-http'), cpu: cpuRatio('http-s1', 'base-http'), min: 0.8 },
    { name: 'HTTP/1.1 fast path vs node:http (same config)', value: ratio('http-s1', 'http-s1-node'), cpu: cpuRatio('http-s1', 'http-s1-node'), min: 1 },
    { name: 'same, decision log sampled at 1% of allows', value: ratio('http-s1-log1pct', 'base-http'), cpu: cpuRatio('http-s1-log1pct', 'base-http'), min: 0.8 },
    { name: 'scenario 3 >= 0.9 x scenario 1', value: ratio('s3', 's1'), cpu: cpuRatio('s3', 's1'), min: 0.9 },
    { name: 'scenario 4 >= 0.8 x scenario 1', value: ratio('s4', 's1'), cpu: cpuRatio('s4', 's1'), min: 0.8 },
    { name: 'scenario 8: MCP tools/call with a 4 KiB body >= 0.8 x the same Check without a body', value: ratio('s8', 's8n'), cpu: cpuRatio('s8', 's8n'), min: 0.8 },
    { name: 'scenario 2 verifications/s >= 0.8 x raw crypto.verify (whole Check)', value: verVsRaw, min: 0.8 },
    { name: "scenario 2 verification step (the server's JwtVerifier) >= 0.8 x raw crypto.verify", value: byId['raw-verify']?.verifierVsRaw ?? NaN, min: 0.8 },
    { name: `peak RSS with ${memory?.tokens?.toLocaleString('en') ?? '?'} distinct tokens <= ${opt.rssBoundMiB} MiB`, value: memory?.peakRssMiB ?? NaN, max: opt.rssBoundMiB },
    { name: `RSS growth over the second half of the tokens <= ${opt.rssBoundMiB / 8} MiB (plateau)`, value: memory?.growthSecondHalfMiB ?? NaN, max: opt.rssBoundMiB / 8 },
    { name: 'scenario 7c (cookie session) >= 0.8 x scenario 1 (cached JWT)', value: ratio('s7c', 's1'), cpu: cpuRatio('s7c', 's1'), min: 0.8 },
    { name: 'scenario 7r (Redis session) >= 0.6 x scenario 7c (cookie session)', value: ratio('s7r', 's7c'), cpu: cpuRatio('s7r', 's7c'), min: 0.6 },
    { name: `peak RSS with ${sessionMemory?.sessions?.toLocaleString('en') ?? '?'} distinct sessions in Redis <= ${opt.rssBoundMiB} MiB`, value: sessionMemory?.peakRssMiB ?? NaN, max: opt.rssBoundMiB },
  ].map((t) => ({ ...t, met: Number.isFinite(t.value) ? (t.min !== undefined ? t.value >= t.min : t.value <= t.max) : null }));
  return {
    date: new Date().toISOString(),
    machine: { cpu: machineInfo(), cpus: ncpu, memGiB: +(totalmem() / 2 ** 30).toFixed(1), node: process.version, host: hostname(), stealPct: +stealPct.toFixed(2), pinned: PIN.enabled ? { servers: `cpu${PIN.server}`, load: `cpu${PIN.load}` } : false },
    options: opt,
    rows,
    verification: {
      alg: 'ES256',
      serverVerificationsPerSec: verPerSec,
      verifiedFraction: median(s2.map(verFrac)),
      cryptoVerifyPerSec: byId['raw-verify']?.cryptoVerifyPerSec,
      joseVerifyPerSec: byId['raw-verify']?.joseVerifyPerSec,
      verifierPerSec: byId['raw-verify']?.verifierPerSec,
      verifierVsCryptoVerify: byId['raw-verify']?.verifierVsRaw,
      verifierFailures: byId['raw-verify']?.verifierBad,
      ratioToCryptoVerify: verVsRaw,
      netOfStackPerSec: netVer,
      netOfStackRatio: netVer / (byId['raw-verify']?.cryptoVerifyPerSec ?? NaN),
    },
    cpuRatios: {
      grpcStackVsPlainHttp2: cpuRatio('base-grpc', 'base-h2'),
      s1VsBaseline: cpuRatio('s1', 'base-grpc'),
      s1Log1pctVsS1: cpuRatio('s1-log1pct', 's1'),
      s1LeanVsS1: cpuRatio('s1-lean', 's1'),
      s1LeanVsBaseline: cpuRatio('s1-lean', 'base-grpc'),
      s3VsS1: cpuRatio('s3', 's1'),
      s4VsS1: cpuRatio('s4', 's1'),
      s5VsS2: cpuRatio('s5', 's2'),
      s2VsBaselineNode: cpuRatio('s2', 'base-grpc-node'),
      httpS1VsNoopHttp: cpuRatio('http-s1', 'base-http'),
      httpS1NodeVsNoopHttp: cpuRatio('http-s1-node', 'base-http'),
      httpS1VsHttpS1Node: cpuRatio('http-s1', 'http-s1-node'),
      httpS1MixedVsNoopHttp: cpuRatio('http-s1-mixed', 'base-http'),
    },
    ratios: {
      grpcStackVsPlainHttp2: ratio('base-grpc', 'base-h2'),
      s1VsBaseline: ratio('s1', 'base-grpc'),
      s1Log1pctVsS1: ratio('s1-log1pct', 's1'),
      s1LeanVsS1: ratio('s1-lean', 's1'),
      s1LeanVsBaseline: ratio('s1-lean', 'base-grpc'),
      s3VsS1: ratio('s3', 's1'),
      s4VsS1: ratio('s4', 's1'),
      s8VsS8n: ratio('s8', 's8n'),
      s5VsS2: ratio('s5', 's2'),
      s7cVsS1: ratio('s7c', 's1'),
      s7rVsS7c: ratio('s7r', 's7c'),
      s6aVsBaseline: ratio('s6a', 'base-grpc'),
      s6bVsBaseline: ratio('s6b', 'base-grpc'),
      loadgenVsH2loadBaseline: ratio('base-grpc-node', 'base-grpc'),
      httpS1VsNoopHttp: ratio('http-s1', 'base-http'),
      httpS1NodeVsNoopHttp: ratio('http-s1-node', 'base-http'),
      httpS1VsHttpS1Node: ratio('http-s1', 'http-s1-node'),
      httpS1MixedVsNoopHttp: ratio('http-s1-mixed', 'base-http'),
      httpS1VsGrpcS1: ratio('http-s1', 's1'),
    },
    exchange: {
      // STS calls per Check over the same window (the server's JWT counter counts every Check)
      stsExchangesPerRequestS5: median((results['s5'] ?? []).map((m) => m.stsExchanges / ((m.jwt?.ok ?? 0) + (m.jwt?.cached ?? 0)))),
      stsExchangesS4: median((results['s4'] ?? []).map((m) => m.stsExchanges)),
    },
    memory,
    sessionMemory,
    targets,
    skipped,
  };
}

function printReport(rep) {
  const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
  const lines = [];
  lines.push('');
  lines.push(`obo-authz benchmark, ${rep.date} — ${rep.machine.cpu} x${rep.machine.cpus}, node ${rep.machine.node}, ${rep.options.connections} conns x ${rep.options.streams} streams, ${rep.options.rounds} rounds x ${rep.options.durationSec}s (medians), cpu steal ${rep.machine.stealPct}%`);
  const stalled = rep.rows.filter((r) => r.stalledRounds).map((r) => `${r.id} x${r.stalledRounds}`);
  if (stalled.length) lines.push(`rounds measured again after a machine stall (no Check answered, or median over the 1 s deadline): ${stalled.join(', ')}`);
  lines.push('');
  lines.push(`| scenario | load | req/s | p50 ms | p99 ms | req/s vs baseline | server CPU µs/req | CPU-normalized vs baseline |`);
  lines.push(`|---|---|---:|---:|---:|---:|---:|---:|`);
  for (const r of rep.rows) {
    if (r.skipped) {
      lines.push(`| ${r.id}: ${r.title} | ${r.tool} | skipped: ${r.skipped} | | | | | |`);
      continue;
    }
    lines.push(`| ${r.id}: ${r.title} | ${r.tool} | ${f(r.rps)} | ${f(r.p50ms, 2)} | ${f(r.p99ms, 2)} | ${f(r.vsBaseline, 2)} | ${f(r.serverCpuPerReqUs, 0)} | ${f(r.cpuVsBaseline, 2)} |`);
  }
  lines.push('');
  const v = rep.verification;
  lines.push(`verification (scenario 2, ${v.alg}): server ${f(v.serverVerificationsPerSec)}/s (${f(v.verifiedFraction * 100, 1)}% of requests verified a signature); raw crypto.verify ${f(v.cryptoVerifyPerSec)}/s, jose ${f(v.joseVerifyPerSec)}/s, the server's JwtVerifier ${f(v.verifierPerSec)}/s (${f(v.verifierVsCryptoVerify, 2)} of raw, ${v.verifierFailures ?? '-'} failures) on the server core; whole Checks ratio ${f(v.ratioToCryptoVerify, 2)}; net of the gRPC stack ${f(v.netOfStackPerSec)}/s (${f(v.netOfStackRatio, 2)})`);
  const ra = rep.ratios;
  lines.push(`ratios: grpc-js baseline / plain http2 ${f(ra.grpcStackVsPlainHttp2, 2)}; s1 / baseline ${f(ra.s1VsBaseline, 2)}; s1 log 1% / s1 ${f(ra.s1Log1pctVsS1, 2)}; s1 lean transport / s1 ${f(ra.s1LeanVsS1, 2)} (/ baseline ${f(ra.s1LeanVsBaseline, 2)}); s3 / s1 ${f(ra.s3VsS1, 2)}; s4 / s1 ${f(ra.s4VsS1, 2)}; s5 / s2 ${f(ra.s5VsS2, 2)}; node loadgen / h2load on the baseline ${f(ra.loadgenVsH2loadBaseline, 2)}; HTTP transport s1 / no-op node:http ${f(ra.httpS1VsNoopHttp, 2)} (/ gRPC s1 ${f(ra.httpS1VsGrpcS1, 2)}; fast path off / no-op node:http ${f(ra.httpS1NodeVsNoopHttp, 2)}; fast path on / off ${f(ra.httpS1VsHttpS1Node, 2)}; on the server that also answers gRPC ${f(ra.httpS1MixedVsNoopHttp, 2)})`);
  if (rep.memory && !rep.memory.skipped) {
    const m = rep.memory;
    lines.push(`memory: ${m.tokens.toLocaleString('en')} distinct tokens at ${f(m.rps)}/s: RSS ${f(m.rssStartMiB)} MiB at start, ${f(m.rssAt10pctMiB)} at 10%, ${f(m.rssAt50pctMiB)} at 50%, ${f(m.rssEndMiB)} at the end, ${f(m.rssAfter3sMiB)} 3 s later, peak ${f(m.peakRssMiB)} MiB (bound ${m.boundMiB} MiB); verifications ${JSON.stringify(m.jwtVerifications)}; at the end V8 heap used ${f(m.heapAtEnd?.heapUsedMiB)} of ${f(m.heapAtEnd?.heapTotalMiB)} MiB, external ${f(m.heapAtEnd?.externalMiB)} MiB`);
  } else if (rep.memory?.skipped) lines.push(`memory: skipped: ${rep.memory.skipped}`);
  if (rep.rssAfterRoundsMiB) lines.push(`RSS of the servers after the rounds (MiB): ${Object.entries(rep.rssAfterRoundsMiB).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  lines.push(`exchange: STS calls per Check in s5 ${f(rep.exchange.stsExchangesPerRequestS5, 2)}, in s4 ${f(rep.exchange.stsExchangesS4)}`);
  lines.push('');
  const cr = rep.cpuRatios;
  lines.push(`CPU-normalized ratios: grpc-js baseline / plain http2 ${f(cr.grpcStackVsPlainHttp2, 2)}; s1 / baseline ${f(cr.s1VsBaseline, 2)}; s1 log 1% / s1 ${f(cr.s1Log1pctVsS1, 2)}; s1 lean / s1 ${f(cr.s1LeanVsS1, 2)} (/ baseline ${f(cr.s1LeanVsBaseline, 2)}); s3 / s1 ${f(cr.s3VsS1, 2)}; s4 / s1 ${f(cr.s4VsS1, 2)}; s5 / s2 ${f(cr.s5VsS2, 2)}; HTTP transport s1 / no-op node:http ${f(cr.httpS1VsNoopHttp, 2)} (fast path off ${f(cr.httpS1NodeVsNoopHttp, 2)}; on / off ${f(cr.httpS1VsHttpS1Node, 2)})`);
  lines.push('');
  lines.push('| target | measured (req/s ratio) | CPU-normalized | met |');
  lines.push('|---|---:|---:|---|');
  for (const t of rep.targets) lines.push(`| ${t.name} | ${f(t.value, t.max ? 0 : 2)} | ${t.cpu !== undefined ? f(t.cpu, 2) : ''} | ${t.met === null ? 'n/a' : t.met ? 'yes' : 'NO'} |`);
  console.log(lines.join('\n'));
}
