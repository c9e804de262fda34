#!/usr/bin/env node
// In-process microbenchmark of the per-Check cost of the compiled pipeline (dist/), without
// sockets or load generators: what one Check costs the server's CPU between "the transport has
// the request" and "the answer is handed back", for
//   grpc-s1   scenario 1 (cached ES256 JWT, 10 AuthorizationPolicies): the CheckRequest's bytes ->
//             the request deserializer the tree's gRPC server gives grpc-js -> evaluateCheck ->
//             toCheckResponse -> the response serializer -> CheckRecorder.record (metrics,
//             decision line to a LineWriter on /dev/null)
//   grpc-s8n, grpc-s8  scenario 8: an MCP POST /mcp without a body, and a tools/call with a 4 KiB
//             JSON-RPC body read by a request.mcp.tool rule (what the body costs the pipeline)
//   grpc-s4   scenario 4: the same request routed to the token-exchange backend, every Check an
//             exchange-cache hit (the first exchange goes to bench/sts-stub.mjs on loopback)
//   http-s1   scenario 1 over the HTTP authorization transport: headersOf (Node's raw header
//             list) -> buildCheckRequest -> evaluateCheck -> answerFor -> CheckRecorder.record
// Everything above is timed; grpc-js's and node:http's own work (framing, HTTP/2, parsing) is not.
//
//   npm run bench:hot                                  this tree
//   npm run bench:hot -- --against /path/to/other/tree  A/B: this tree and another tree's dist/,
//                                                      each in its own process, rounds interleaved
//   options: --rounds N (7), --checks N per round (40000), --only grpc-s1,grpc-s4,http-s1,grpc-s8n,grpc-s8,
//            --cpu-prof (each tree's process writes a V8 CPU profile into the temp folder, kept)
// Prints ns per Check (median of the rounds, and min..max) per tree and scenario; with
// --against, B/A as well. A tree without a scenario's modules (an older build) skips it.
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const SCENARIOS = ['grpc-s1', 'grpc-s4', 'http-s1', 'grpc-s8n', 'grpc-s8'];

if (process.env.HOT_PATH_CHILD) await child();
else await parent();

// ------------------------------------------------------------------ orchestrator
async function parent() {
  const { values: argv } = parseArgs({
    options: {
      against: { type: 'string' },
      rounds: { type: 'string', default: '7' },
      checks: { type: 'string', default: '40000' },
      only: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
    },
  });
  const C = await import('./lib/configs.mjs');
  const T = await import('./lib/tokens.mjs');
  const { checkRequestFrame, httpCheckRequest } = await import('./lib/grpc-frames.mjs');
  const rounds = Number(argv.rounds);
  const checks = Number(argv.checks);
  const only = argv.only ? argv.only.split(',') : SCENARIOS;
  for (const s of only) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s} (${SCENARIOS.join(', ')})`);
  const trees = [{ name: 'this', root: resolve(here, '..') }];
  if (argv.against) trees.push({ name: 'against', root: resolve(argv.against) });

  const tmp = mkdtempSync(join(tmpdir(), 'obo-authz-hot-'));
  const procs = [];
  const stop = () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    if (!argv.keep && !argv['cpu-prof']) rmSync(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    stop();
    process.exit(130);
  });
  try {
    const sts = spawn(process.execPath, [join(here, 'sts-stub.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(sts);
    const stsAddress = await new Promise((res, rej) => {
      let buf = '';
      sts.stdout.on('data', (c) => {
        buf += c;
        const m = /"stsAddress":"([^"]+)"/.exec(buf);
        if (m) res(m[1]);
      });
      sts.on('exit', (code) => rej(new Error(`sts stub exited (${code})`)));
    });
    sts.stdout.resume();

    const es = T.newEs256Key('bench-es256-1');
    const now = Math.floor(Date.now() / 1000);
    const token = T.signJwt(es, { iss: C.ISSUER, sub: 'user-00000001', aud: C.AUDIENCE, iat: now, exp: now + 6 * 3600, scope: 'mcp:tools mcp:resources', groups: ['bench-users'] });
    const cfgDir = C.writeConfig(join(tmp, 'cfg'), {
      '00-settings.yaml': C.settingsYaml(),
      '10-ra.yaml': C.requestAuthenticationYaml(T.jwksJson(es)),
      '20-policies.yaml': C.tenPolicies('bench'),
      '30-exchange.yaml': C.exchangeYaml(`http://${stsAddress}/oauth2/token`),
      '40-mcp.yaml': C.mcpBenchYaml('mcpbench'),
    });
    // scenario 8 of npm run bench: an MCP tools/call with a 4 KiB JSON-RPC body (8), and the same Check without one (8n)
    const mcpCall = (pad) => JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'search', arguments: { query: 'weather in Paris', context: pad } } });
    const mcpReq = (body) => {
      const extra = body === undefined ? { 'x-bench-nobody': '1' } : {};
      const r = httpCheckRequest({ method: 'POST', path: '/mcp', contextExtensions: { namespace: 'mcpbench' }, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', authorization: `Bearer ${token}`, ...extra } });
      if (body !== undefined) {
        r.attributes.request.http.body = body;
        r.attributes.request.http.headers['x-envoy-auth-partial-body'] = 'false';
      }
      return r;
    };
    const req = (extra) =>
      httpCheckRequest({ method: 'POST', path: '/mcp', contextExtensions: { namespace: 'bench', ...extra }, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } });
    const setup = {
      cfgDir,
      checks,
      frames: {
        'grpc-s1': checkRequestFrame(req({})).subarray(5).toString('base64'),
        'grpc-s4': checkRequestFrame(req({ backend: 'mcp-tools' })).subarray(5).toString('base64'),
        'grpc-s8n': checkRequestFrame(mcpReq(undefined)).subarray(5).toString('base64'),
        'grpc-s8': checkRequestFrame(mcpReq(mcpCall('x'.repeat(4096 - mcpCall('').length)))).subarray(5).toString('base64'),
      },
      // Node's raw header list of scenario http-s1 as h2load --h1 sends it
      rawHeaders: ['host', '127.0.0.1:9191', 'user-agent', 'h2load nghttp2/1.52.0', 'content-type', 'application/json', 'authorization', `Bearer ${token}`, 'x-request-id', 'bench-1'],
      url: '/envoy;namespace=bench/mcp',
    };

    const workers = [];
    for (const t of trees) {
      const execArgv = argv['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', join(tmp, `prof-${t.name}`)] : [];
      const p = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, HOT_PATH_CHILD: '1' }, execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      procs.push(p);
      const w = { ...t, p, pending: null };
      p.on('message', (m) => {
        const r = w.pending;
        w.pending = null;
        if (m.error) r?.rej(new Error(`${t.name}: ${m.error}`));
        else r?.res(m);
      });
      p.on('exit', (code) => w.pending?.rej(new Error(`${t.name}: exited (${code})`)));
      w.ask = (msg) => new Promise((res, rej) => ((w.pending = { res, rej }), p.send(msg)));
      workers.push(w);
    }
    const ready = await Promise.all(workers.map((w) => w.ask({ op: 'setup', root: w.root, ...setup })));
    for (const [i, r] of ready.entries()) {
      workers[i].has = new Set(r.scenarios);
      console.error(`[hot-path] ${workers[i].name}: ${workers[i].root} (${r.scenarios.join(', ') || 'nothing'}; ${r.notes.join('; ')})`);
    }

    const ns = {}; // scenario -> tree -> [ns per check]
    for (const s of only) ns[s] = Object.fromEntries(workers.map((w) => [w.name, []]));
    // one warm-up round each, not counted
    for (const s of only) for (const w of workers) if (w.has.has(s)) await w.ask({ op: 'run', scenario: s });
    for (let r = 0; r < rounds; r++) {
      for (const s of only) {
        // interleaved, alternating which tree goes first
        const order = r % 2 === 0 ? workers : [...workers].reverse();
        for (const w of order) if (w.has.has(s)) ns[s][w.name].push((await w.ask({ op: 'run', scenario: s })).nsPerCheck);
      }
    }
    // each tree's process exits by itself (a killed one would not write its --cpu-prof profile)
    await Promise.all(workers.map((w) => new Promise((res) => (w.p.once('exit', res), w.p.send({ op: 'exit' })))));

    const med = (a) => {
      const b = [...a].sort((x, y) => x - y);
      return b.length === 0 ? NaN : b.length % 2 ? b[(b.length - 1) / 2] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2;
    };
    const rows = [];
    for (const s of only) {
      const row = { scenario: s };
      for (const w of workers) {
        const a = ns[s][w.name];
        row[w.name] = a.length ? { median: Math.round(med(a)), min: Math.round(Math.min(...a)), max: Math.round(Math.max(...a)) } : null;
      }
      if (row.this && row.against) row.againstOverThis = Number((row.against.median / row.this.median).toFixed(3));
      rows.push(row);
    }
    const cell = (c) => (c ? `${c.median} (${c.min}..${c.max})` : 'n/a');
    console.log(`ns per Check, median of ${rounds} interleaved rounds of ${checks} Checks (min..max)`);
    console.log(`| scenario | this tree |${argv.against ? ' against | against / this |' : ''}`);
    console.log(`|---|---|${argv.against ? '---|---|' : ''}`);
    for (const r of rows) console.log(`| ${r.scenario} | ${cell(r.this)} |${argv.against ? ` ${cell(r.against)} | ${r.againstOverThis ?? 'n/a'} |` : ''}`);
    console.log(JSON.stringify({ rounds, checks, trees: workers.map((w) => ({ name: w.name, root: w.root })), rows }));
    if (argv['cpu-prof']) console.error(`[hot-path] CPU profiles in ${tmp}`);
  } finally {
    stop();
  }
}

// ------------------------------------------------------------------ one tree, in its own process
async function child() {
  let env;
  process.on('message', async (m) => {
    try {
      if (m.op === 'setup') {
        env = await load(m);
        process.send({ scenarios: Object.keys(env.run), notes: env.notes });
      } else if (m.op === 'run') process.send({ nsPerCheck: await round(env, m.scenario) });
      else if (m.op === 'exit') process.exit(0);
    } catch (e) {
      process.send({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  });
}

async function optionalImport(root, rel) {
  try {
    return await import(pathToFileURL(join(root, 'dist', 'src', rel)).href);
  } catch (e) {
    if (e?.code === 'ERR_MODULE_NOT_FOUND') return null;
    throw e;
  }
}

async function load(m) {
  const root = m.root;
  const imp = (rel) => optionalImport(root, rel);
  const serve = await imp('cli/serve.js');
  const compile = (await imp('pipeline/compile.js')) ?? (await imp('config/compile.js'));
  const pipeline = await imp('pipeline/pipeline.js');
  const respond = await imp('respond/respond.js');
  const proto = await imp('grpc/proto.js');
  const dlog = await imp('observability/decision-log.js');
  const recorderMod = await imp('pipeline/recorder.js');
  const httpReq = await imp('http/authz-request.js');
  const httpResp = await imp('http/authz-response.js');
  const notes = [];

  const runtime = serve.createRuntime('warn');
  const loaded = compile.loadConfig([m.cfgDir], runtime);
  if (!loaded.ok) throw new Error(`config not accepted: ${JSON.stringify(loaded.issues).slice(0, 500)}`);
  const cfg = loaded.config;
  const sink = new dlog.LineWriter('/dev/null');
  // The recorder of this tree, or (older trees) what its gRPC server did inline.
  let recorder;
  if (recorderMod) recorder = (transport) => new recorderMod.CheckRecorder(runtime, transport, sink);
  else {
    notes.push('no CheckRecorder: metrics and decision log as its gRPC server did them');
    recorder = () => {
      const log = new dlog.DecisionLog(sink);
      const mtr = runtime.metrics;
      const byReason = { allow: new Map(), deny: new Map() };
      const dAllow = mtr.checkDuration.labels('allow');
      const dDeny = mtr.checkDuration.labels('deny');
      return {
        record(c, d, ms) {
          const k = d.allow ? 'allow' : 'deny';
          let ch = byReason[k].get(d.reason);
          if (!ch) byReason[k].set(d.reason, (ch = mtr.checks.labels(k, d.reason)));
          ch.inc();
          (d.allow ? dAllow : dDeny).observe(ms / 1000);
          if (c) log.record(c.settings, d, ms);
        },
      };
    };
  }
  const { evaluateCheck } = pipeline;
  const { toCheckResponse } = respond;
  const check = proto.loadProtos().authorization.Check;
  // the Check request deserializer and response serializer this tree's gRPC server gives grpc-js
  const decoder = await imp('grpc/decode-request.js');
  const deserialize = decoder ? decoder.checkRequestDeserializer(check.requestDeserialize) : check.requestDeserialize;
  const encoder = await imp('grpc/encode-response.js');
  const serialize = encoder ? encoder.encodeCheckResponse : check.responseSerialize;
  const reasonHeader = cfg.settings.reasonHeader ?? false;
  const frames = Object.fromEntries(Object.entries(m.frames).map(([k, v]) => [k, Buffer.from(v, 'base64')]));

  // One gRPC Check as src/grpc/server.ts answers it (the request already decoded).
  const grpcRec = recorder('grpc');
  let sinkBytes = 0;
  const grpcCheck = (bytes) => {
    const start = performance.now();
    const request = deserialize(bytes);
    const r = evaluateCheck(request, cfg, runtime, { deadline: undefined });
    const answer = (d) => {
      const resp = toCheckResponse(d, { reasonHeader });
      grpcRec.record(cfg, d, performance.now() - start);
      sinkBytes += serialize(resp).length;
      return d;
    };
    return r instanceof Promise ? r.then(answer) : answer(r);
  };
  const grpcRun = (name) => ({ makeBatch: (n) => new Array(n).fill(frames[name]), check: grpcCheck });
  const run = { 'grpc-s1': grpcRun('grpc-s1'), 'grpc-s4': grpcRun('grpc-s4'), 'grpc-s8n': grpcRun('grpc-s8n'), 'grpc-s8': grpcRun('grpc-s8') };

  if (httpReq && httpResp && recorderMod) {
    const httpRec = recorder('http');
    const { headersOf, buildCheckRequest } = httpReq;
    const { answerFor, httpLimits } = httpResp;
    const s = cfg.settings.httpAuthz ?? (await imp('config/http-authz-settings.js')).DEFAULT_HTTP_AUTHZ;
    const peer = () => '127.0.0.1';
    const opts = { deadline: undefined, unsupported: httpLimits };
    // One HTTP authorization Check as src/http/authz-server.ts answers it.
    run['http-s1'] = {
      makeBatch: (n) => new Array(n).fill(m.rawHeaders),
      check: (rawHeaders) => {
        const start = performance.now();
        const hop = { host: '', contentLength: undefined, transferEncoding: undefined };
        const headers = headersOf(rawHeaders, hop);
        const inb = { method: 'POST', url: m.url, headers, host: hop.host, peer, protocol: 'HTTP/1.1' };
        const b = buildCheckRequest(inb, s, runtime.now(), undefined);
        if (!b.ok) throw new Error(`http-s1 refused: ${b.message}`);
        opts.deadline = b.deadline;
        const r = evaluateCheck(b.raw, cfg, runtime, opts);
        const answer = (d) => {
          const a = answerFor(b.convention, d, headers, s, reasonHeader);
          httpRec.record(cfg, a.status === d.httpStatus || d.allow ? d : { ...d, httpStatus: a.status }, performance.now() - start);
          sinkBytes += a.headers.length;
          return d;
        };
        return r instanceof Promise ? r.then(answer) : answer(r);
      },
    };
  } else notes.push('no HTTP authorization transport: http-s1 skipped');

  // Every scenario must be the allow it claims to be (s4: with the exchanged token upstream).
  for (const [name, sc] of Object.entries(run)) {
    const d = await sc.check(sc.makeBatch(1)[0]);
    const auth = d.upstream?.set?.get?.('authorization');
    if (!d.allow) throw new Error(`${name}: expected an allow, got ${d.reason} (${d.message})`);
    if (name === 'grpc-s4' && (!auth || auth.includes(m.rawHeaders[7].slice(7)))) throw new Error('grpc-s4: no exchanged token upstream');
    const d2 = sc.check(sc.makeBatch(1)[0]);
    if (d2 instanceof Promise) throw new Error(`${name}: the second Check went asynchronous (not a cached hit)`);
  }
  void sinkBytes;
  return { run, notes, checks: m.checks };
}

const BATCH = 1000;
async function round(env, scenario) {
  const sc = env.run[scenario];
  let total = 0n;
  let done = 0;
  while (done < env.checks) {
    const batch = sc.makeBatch(Math.min(BATCH, env.checks - done));
    // let the LineWriter's asynchronous write go out between batches (not timed)
    await new Promise((r) => setImmediate(r));
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch.length; i++) {
      const d = sc.check(batch[i]);
      if (d instanceof Promise) await d;
    }
    total += process.hrtime.bigint() - t0;
    done += batch.length;
  }
  return Number(total) / done;
}
