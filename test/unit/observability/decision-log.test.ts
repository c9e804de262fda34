import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS } from '../../../src/config/settings.js';
import { DecisionLog, decisionLine, isoNow, LineWriter } from '../../../src/observability/decision-log.js';
import { createLogger } from '../../../src/observability/logger.js';
import type { Decision } from '../../../src/core/decision.js';
import type { Identity } from '../../../src/core/identity.js';
import { buildRequestContext, type RequestContext } from '../../../src/core/context.js';
import { decision } from '../../helpers/decision.js';
import { waitUntil } from '../../helpers/wait.js';
import { decisionMetadata } from '../../../src/respond/respond.js';

function identity(principal: string): Identity {
  return { kind: 'jwt', principal, issuer: 'i', subject: 's', audiences: [], presenter: '', claims: {}, admittedBy: 'r' } as unknown as Identity;
}


const tmp = mkdtempSync(join(tmpdir(), 'obo-dlog-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The oracle: the decision as the object a pino logger would be given, field by field. */
interface DecisionLogEntry {
  request_id: string;
  decision: 'allow' | 'deny';
  reason: string;
  method?: string;
  host?: string;
  path?: string;
  client_address?: string;
  status?: number;
  detail?: string;
  policy?: string;
  rule?: number;
  principal?: string;
  actor?: string;
  audience?: string;
  exchange_policy?: string;
  exchange_cache?: string;
  audit?: string[];
  shadow?: unknown[];
  latency_ms: number;
}

function decisionLogEntry(d: Decision, latencyMs: number): DecisionLogEntry {
  const e: DecisionLogEntry = { request_id: d.requestId, decision: d.allow ? 'allow' : 'deny', reason: d.reason } as DecisionLogEntry;
  if (d.request) {
    e.method = d.request.method;
    e.host = d.request.host;
    e.path = d.request.path;
    if (d.request.remoteIp) e.client_address = d.request.remoteIp;
  }
  if (!d.allow) {
    e.status = d.httpStatus;
    e.detail = d.message;
  }
  const a = d.attribution;
  if (a.policy) e.policy = a.policy;
  if (a.rule !== undefined) e.rule = a.rule;
  if (d.identity) e.principal = d.identity.principal;
  if (d.actor) e.actor = d.actor.principal;
  if (a.audience) e.audience = a.audience;
  if (a.exchangePolicy) e.exchange_policy = a.exchangePolicy;
  if (a.exchangeCache) e.exchange_cache = a.exchangeCache;
  if (a.audit?.length) e.audit = a.audit;
  if (a.shadow?.length) e.shadow = a.shadow;
  e.latency_ms = Math.round(latencyMs * 1000) / 1000;
  return e;
}

/** The request side of a decision, as the pipeline builds it from a CheckRequest. */
function requestOf(headers: Record<string, string>, path = '/mcp?access_token=secret', peer = '10.0.0.7'): RequestContext {
  return buildRequestContext(
    {
      attributes: {
        source: { address: { socket_address: { address: peer, port_value: 1 } } },
        request: { http: { id: '123', method: 'POST', path, host: 'mcp.example.com', headers: { ':path': path, ...headers } } },
      },
    },
    { settings: { defaultNamespace: 'default', trustedProxyHops: 1 } },
  );
}

/** The same decision logged through pino (object) and by hand (line): same JSON. */
function viaPino(d: Decision, latencyMs: number): Record<string, unknown> {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    redact: false,
    destination: new Writable({
      write(c, _e, cb) {
        lines.push(String(c));
        cb();
      },
    }),
  });
  // pino writes synchronously to a Writable
  logger.child({ component: 'decision' }).info(decisionLogEntry(d, latencyMs), 'decision');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as Record<string, unknown>;
}

const cases: [string, Decision][] = [
  ['plain allow', decision({ attribution: { policy: 'ns/allow-mcp', rule: 0 }, identity: identity('https://idp/u1') })],
  [
    'deny with every field and hostile strings',
    decision({
      allow: false,
      reason: 'ERR_RBAC_DENIED',
      httpStatus: 403,
      message: 'denied by "ns/deny-all" rule 2\nsecond line \u2028 \u0000 \\ end',
      requestId: 'req-"quoted"\n\ttab \ud83d\ude00',
      identity: identity('https://idp/"odd"\u0001'),
      actor: identity('spiffe://cluster.local/ns/a/sa/agent'),
      attribution: {
        policy: 'ns/deny-all',
        rule: 2,
        audience: 'mcp-tools',
        exchangePolicy: 'ns/tep',
        exchangeCache: 'hit',
        audit: ['ns/audit-1', 'ns/audit-"2"'],
        shadow: [{ policy: 'ns/dry', rule: 1, wouldDeny: true }],
      },
    }),
  ],
  ['allow with rule 0 and no identity', decision({ attribution: { rule: 0 } })],
  ['with the request: method, host, path without the query, client address', decision({ request: requestOf({ 'x-forwarded-for': '203.0.113.9' }) })],
  ['hostile request strings', decision({ allow: false, reason: 'ERR_RBAC_DENIED', httpStatus: 403, request: requestOf({}, '/a"b\\c\n?q=1') })],
];

describe('decisionLine', () => {
  it.each(cases)('%s: the hand-built line is the JSON pino would write, field for field', (_name, d) => {
    const line = decisionLine(d, 1.23456);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1); // one line, whatever the strings hold
    const ours = JSON.parse(line) as Record<string, unknown>;
    const theirs = viaPino(d, 1.23456);
    expect(typeof ours['time']).toBe('string');
    expect(new Date(ours['time'] as string).toISOString()).toBe(ours['time']);
    delete ours['time'];
    delete theirs['time'];
    expect(ours).toEqual(theirs);
    expect(Object.keys(ours)).toEqual(Object.keys(theirs));
    expect(ours).toMatchObject({ ...decisionLogEntry(d, 1.23456), msg: 'decision', component: 'decision', level: 'info' });
  });

  it('lines in a row that differ in one field each (the fragments kept from line to line) are each the JSON pino would write', () => {
    // Each step changes one thing that a kept fragment depends on, then changes it back.
    const steps: Partial<Decision>[] = [];
    const paths = ['/mcp', '/mcp?x=1', '/api/"q"', '/mcp'];
    const peers = ['10.0.0.7', '10.0.0.8', '10.0.0.7'];
    for (const p of paths) steps.push({ request: requestOf({}, p) });
    for (const peer of peers) steps.push({ request: requestOf({}, '/mcp', peer) });
    steps.push({ request: requestOf({ host: 'other.example' }) }, { request: requestOf({ 'x-forwarded-for': '203.0.113.9' }) });
    for (const principal of ['https://idp/u1', 'https://idp/u2', 'https://idp/"u1"', 'https://idp/u1']) steps.push({ identity: identity(principal) });
    for (const [policy, rule] of [['ns/a', 0], ['ns/a', 1], ['ns/b', 1], ['ns/a', undefined], ['ns/a', 0], ['', 3], ['ns/a', 70], ['ns/a', 70]] as const) {
      steps.push({ attribution: policy ? { policy, rule } : { rule } });
    }
    for (const [allow, reason] of [[true, 'OK'], [false, 'ERR_RBAC_DENIED'], [true, 'OK'], [false, 'ERR_JWT_EXPIRED'], [true, 'ERR_JWT_EXPIRED'], [false, 'OK']] as const) {
      steps.push({ allow, reason, httpStatus: allow ? 200 : 403, message: allow ? 'allowed' : 'denied' });
    }
    const base = { request: requestOf({}), identity: identity('https://idp/u1'), attribution: { policy: 'ns/a', rule: 0 } };
    let n = 0;
    for (const transport of [undefined, 'http', 'grpc']) {
      for (const over of steps) {
        const d = decision({ ...base, ...over, requestId: `r${n++}` });
        const ours = JSON.parse(decisionLine(d, 0.5, isoNow(), 'remote', transport)) as Record<string, unknown>;
        const theirs = viaPino(d, 0.5);
        if (transport) theirs['transport'] = transport;
        delete ours['time'];
        delete theirs['time'];
        expect(ours, JSON.stringify(over)).toEqual(theirs);
      }
    }
    // the same decision on one transport after another
    for (const transport of ['http', 'http', 'grpc', undefined, 'grpc']) {
      const line = JSON.parse(decisionLine(decision({ ...base, requestId: `r${n++}` }), 0.5, isoNow(), 'remote', transport)) as Record<string, unknown>;
      expect(line['transport']).toBe(transport);
    }
  });

  it('formats the time as toISOString() does, across millisecond and second boundaries', () => {
    const base = Date.UTC(2026, 10, 23, 23, 59, 59, 0);
    for (const off of [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1010, 86_400_000 + 5, 3]) {
      expect(isoNow(base + off)).toBe(new Date(base + off).toISOString());
    }
    const now = Date.now();
    expect(isoNow(now)).toBe(new Date(now).toISOString());
  });

  it('samples allows but always logs denies, audits and shadows', () => {
    const lines: string[] = [];
    let r = 0.5;
    const log = new DecisionLog({ write: (l) => void lines.push(l) }, () => r);
    const settings = { ...DEFAULT_SETTINGS, decisionLog: { ...DEFAULT_SETTINGS.decisionLog, allowSampleRate: 0.25 } };
    log.record(settings, decision(), 1); // 0.5 >= 0.25: not sampled
    r = 0.1;
    log.record(settings, decision({ requestId: 'sampled' }), 1);
    r = 0.9;
    log.record(settings, decision({ allow: false, reason: 'ERR_RBAC_DENIED', httpStatus: 403, requestId: 'deny' }), 1);
    log.record(settings, decision({ requestId: 'audit', attribution: { audit: ['ns/a'] } }), 1);
    log.record({ ...settings, decisionLog: { ...settings.decisionLog, enabled: false } }, decision({ allow: false, reason: 'ERR_RBAC_DENIED' }), 1);
    expect(lines.map((l) => (JSON.parse(l) as { request_id: string }).request_id)).toEqual(['sampled', 'deny', 'audit']);
  });

  it('logs the client address as configured: remote.ip (default), the socket peer, or not at all', () => {
    const d = decision({ request: requestOf({ 'x-forwarded-for': '203.0.113.9' }) });
    const addr = (mode: 'remote' | 'peer' | 'none') => (JSON.parse(decisionLine(d, 1, isoNow(), mode)) as { client_address?: string }).client_address;
    expect(addr('remote')).toBe('203.0.113.9');
    expect(addr('peer')).toBe('10.0.0.7');
    expect(addr('none')).toBeUndefined();
    const line = JSON.parse(decisionLine(d, 1)) as Record<string, unknown>;
    expect(line).toMatchObject({ method: 'POST', host: 'mcp.example.com', path: '/mcp' });
    expect(JSON.stringify(line)).not.toContain('access_token');
  });

  it('uses the dynamic_metadata names for every field both carry', () => {
    const d = cases[1]![1];
    const line = JSON.parse(decisionLine(d, 1)) as Record<string, unknown>;
    const meta = decisionMetadata(d);
    for (const [k, v] of Object.entries(meta)) expect(line[k], k).toEqual(v);
  });
});

describe('LineWriter', () => {
  it('batches lines into a file in order and flushes on demand', async () => {
    const path = join(tmp, 'sub', 'decisions.jsonl');
    const w = new LineWriter(path, { batchBytes: 1000, maxDelayMs: 10_000 });
    for (let i = 0; i < 500; i++) w.write(`{"n":${i}}\n`);
    await w.flush();
    const got = readFileSync(path, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { n: number }).n);
    expect(got).toEqual(Array.from({ length: 500 }, (_, i) => i));
    // below the batch size nothing is written until the delay or a flush
    w.write('{"n":500}\n');
    expect(readFileSync(path, 'utf8').split('\n')).toHaveLength(501);
    await w.close();
    expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(501);
    w.write('{"n":"after close"}\n'); // ignored, no throw
  });

  it('keeps multi-byte text and lines longer than a chunk intact and in order', async () => {
    const path = join(tmp, 'utf8.jsonl');
    const w = new LineWriter(path, { batchBytes: 1024, maxDelayMs: 10_000 });
    const want: string[] = [];
    for (let i = 0; i < 300; i++) {
      const line = i % 50 === 7 ? `{"n":${i},"big":"${'x€'.repeat(900)}"}\n` : `{"n":${i},"s":"é€😀 ${i}"}\n`;
      want.push(line);
      w.write(line);
    }
    await w.close();
    expect(readFileSync(path, 'utf8')).toBe(want.join(''));
  });

  it('counts every line of a batch whose write fails', async () => {
    let drops = 0;
    const w = new LineWriter('/dev/full', { batchBytes: 1024, maxDelayMs: 10_000, onDrop: () => drops++ });
    for (let i = 0; i < 500; i++) w.write(`{"n":${i}}\n`);
    await w.close();
    expect(w.dropped).toBe(500);
    expect(drops).toBe(500);
  });

  it('flushSync writes whatever is buffered at once', () => {
    const path = join(tmp, 'sync.jsonl');
    const w = new LineWriter(path, { batchBytes: 1_000_000, maxDelayMs: 10_000 });
    for (let i = 0; i < 100; i++) w.write(`{"n":${i}}\n`);
    w.flushSync();
    expect(readFileSync(path, 'utf8').trim().split('\n')).toHaveLength(100);
  });

  it('a process that exits without shutting down still writes its buffered lines (flushOnExit)', () => {
    const path = join(tmp, 'exit.jsonl');
    const mod = pathToFileURL(join(process.cwd(), 'dist/src/observability/decision-log.js')).href;
    const script = `const { LineWriter } = await import(${JSON.stringify(mod)});
const w = new LineWriter(${JSON.stringify(path)}, { batchBytes: 1_000_000, maxDelayMs: 60_000, flushOnExit: true });
for (let i = 0; i < 1000; i++) w.write('{"n":' + i + '}\\n');
process.exit(3);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.status).toBe(3);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1000);
    expect(JSON.parse(lines[999]!)).toEqual({ n: 999 });
  });

  it('writes a short burst after maxDelayMs without a flush', async () => {
    const path = join(tmp, 'delay.jsonl');
    const w = new LineWriter(path, { batchBytes: 1_000_000, maxDelayMs: 20 });
    w.write('a\n');
    w.write('b\n');
    expect(readFileSync(path, 'utf8')).toBe(''); // buffered, not written yet
    await waitUntil(() => readFileSync(path, 'utf8') === 'a\nb\n', { what: 'the buffered lines to be written after maxDelayMs' });
    await w.close();
  });

  it('drops and counts lines beyond maxPendingBytes instead of buffering without bound', async () => {
    const path = join(tmp, 'drop.jsonl');
    let drops = 0;
    const w = new LineWriter(path, { batchBytes: 1_000_000, maxDelayMs: 10_000, maxPendingBytes: 100, onDrop: () => drops++ });
    for (let i = 0; i < 20; i++) w.write('0123456789\n'); // 11 chars each: 9 fit
    expect(w.dropped).toBe(11);
    expect(drops).toBe(11);
    await w.close();
    expect(readFileSync(path, 'utf8').split('\n').filter(Boolean)).toHaveLength(9);
  });
});
