#!/usr/bin/env node
// `npm run bench:test`: how fast `obo-authz test` runs a table, against two baselines measured
// in the same run on the same requests:
//   pipeline  the same CheckRequests (tokens already minted) through evaluate() in a loop: the
//             cost of the decisions alone, the floor a table runner can approach;
//   process   one `obo-authz check --config` process per case: what testing policies cost
//             before `obo-authz test` (measured on a sample of the cases).
// Cases: the quick-start table's requests repeated with distinct users (every token is new, so
// every case verifies a signature and mints an exchanged token), N = BENCH_CASES (default 2000).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { runTests } from '../dist/src/cli/policy-test/command.js';
import { loadTestKey, tableFetch, TokenMinter } from '../dist/src/cli/policy-test/keys.js';
import { buildRequest, mergeRequest } from '../dist/src/cli/policy-test/run.js';
import { offlineRuntime } from '../dist/src/cli/io.js';
import { loadConfig } from '../dist/src/pipeline/compile.js';
import { evaluate } from '../dist/src/pipeline/pipeline.js';

const N = Number(process.env.BENCH_CASES ?? 2000);
const SAMPLE = Number(process.env.BENCH_PROCESS_SAMPLE ?? 20);
const root = resolve(new URL('..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'obo-bench-test-'));

try {
  // A table of N cases: the shipped quick-start cases with a distinct user each time.
  const base = parse(readFileSync(join(root, 'examples/quickstart/tests/quickstart.yaml'), 'utf8'));
  const shape = base.cases.filter((c) => !c.request?.checkRequest);
  const cases = [];
  for (let i = 0; cases.length < N; i++) {
    const c = structuredClone(shape[i % shape.length]);
    c.name = `${c.name} #${i}`;
    const t = c.request?.token;
    if (t?.claims?.sub) {
      t.claims.sub = `user${i}`;
      if (t.claims.email) t.claims.email = `user${i}@example.com`;
      if (c.expect.principal) c.expect.principal = `https://demo-idp.obo-authz.example/user${i}`;
      if (c.expect.upstream?.headers?.['x-user-sub']) c.expect.upstream.headers['x-user-sub'] = `user${i}`;
      if (c.expect.upstream?.headers?.['x-user-email']) c.expect.upstream.headers['x-user-email'] = `user${i}@example.com`;
      if (c.expect.upstream?.token?.claims?.sub) c.expect.upstream.token.claims.sub = `user${i}`;
    }
    cases.push(c);
  }
  const table = { ...base, config: join(root, 'examples/quickstart'), keys: { 'demo-idp': { ...base.keys['demo-idp'], file: join(root, 'examples/demo-keys/demo-idp.private.jwk.json') } }, cases };
  const tableFile = join(dir, 'bench.yaml');
  writeFileSync(tableFile, stringify(table));

  // Baseline 1: the pipeline alone on the same requests (tokens minted before timing).
  const key = loadTestKey('demo-idp', table.keys['demo-idp'], tableFile);
  const now = () => Date.parse(table.now);
  const runtime = offlineRuntime('silent', { now, fetch: tableFetch([key]) });
  const cfg = loadConfig([table.config], runtime);
  if (!cfg.ok) throw new Error('quick-start config invalid');
  const minter = new TokenMinter(new Map([['demo-idp', key]]), now);
  const requests = [];
  for (const c of cases) requests.push(await buildRequest(mergeRequest(table.defaults?.request, c.request), minter, tableFile, 'cases'));
  for (const r of requests.slice(0, 50)) await evaluate(r, cfg.config, runtime); // warm-up
  let t0 = performance.now();
  for (const r of requests) await evaluate(r, cfg.config, runtime);
  const pipelineMs = performance.now() - t0;
  runtime.shared.disposeAll();

  // obo-authz test on the table, in this process (it reports its own time too).
  const lines = [];
  await runTests([tableFile], { format: 'text' }, { out: () => undefined, err: (s) => lines.push(s) }); // warm-up run
  t0 = performance.now();
  const code = await runTests([tableFile], { format: 'text' }, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
  const testMs = performance.now() - t0;
  if (code !== 0) throw new Error(`the bench table failed:\n${lines.join('\n')}`);

  // Baseline 2: one `check --config` process per case, on a sample.
  const main = join(root, 'dist/src/main.js');
  const reqFile = join(dir, 'req.json');
  t0 = performance.now();
  for (const r of requests.slice(0, SAMPLE)) {
    writeFileSync(reqFile, JSON.stringify(r, (k, v) => (k === 'raw_value' ? undefined : v)));
    try {
      execFileSync(process.execPath, [main, 'check', '--config', table.config, '--request', reqFile], { stdio: 'ignore' });
    } catch {
      // a deny exits 1: still one evaluated case
    }
  }
  const processMs = performance.now() - t0;

  const rate = (n, ms) => Math.round((n / ms) * 1000);
  const result = {
    cases: N,
    testCasesPerSecond: rate(N, testMs),
    pipelineCasesPerSecond: rate(N, pipelineMs),
    processCasesPerSecond: Math.round((SAMPLE / processMs) * 10000) / 10,
    ratioToPipeline: Math.round((pipelineMs / testMs) * 100) / 100,
    speedupOverProcessPerCase: Math.round((processMs / SAMPLE / (testMs / N)) * 10) / 10,
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
