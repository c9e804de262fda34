/**
 * The HTTP/1.1 fast path's connection handling on real loopback sockets: keep-alive reuse,
 * Connection: close, pipelining behind an asynchronous decision (a JWKS the first request must
 * fetch from a real JWKS server on loopback, held until the test releases it), backpressure
 * from a client that does not read, the idle / head / body timeouts of the periodic sweep, a
 * graceful close with a request in flight, and a hand-over to node:http mid-connection.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { ServingState } from '../../src/grpc/server.js';
import { createHttpAuthzServer, type HttpAuthzServer, type HttpAuthzServerOptions } from '../../src/http/authz-server.js';
import { makeTestPki } from '../helpers/certs.js';
import { startHeldJwks } from '../helpers/held-jwks.js';
import { mustCompile } from '../helpers/config.js';
import { open, parseAnswers, rawExchange, readAnswers } from '../helpers/raw-http.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { waitUntil } from '../helpers/wait.js';

const ISSUER = 'https://idp.fastpath.test';

const startJwks = () => startHeldJwks(ISSUER);

const settings = (extra = '') => `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  reasonHeader: true
  httpAuthz:
    trustedProxies: [127.0.0.1/32]
${extra}`;

/** Tokens of ISSUER, keys from `jwksUri`; `sub` answered in x-sub when `claimHeader`. */
const requestAuthentication = (jwksUri: string, claimHeader = true) => `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: istio-system}
spec:
  jwtRules: [{issuer: ${ISSUER}, jwksUri: ${jwksUri}${claimHeader ? ', outputClaimToHeaders: [{header: x-sub, claim: sub}]' : ''}}]
`;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** The listener alone (no gRPC or admin port) on a config, with the given timeouts. */
async function listener(yaml: string, opts: HttpAuthzServerOptions = {}): Promise<{ at: string; server: HttpAuthzServer; runtime: TestRuntime; state: ServingState }> {
  const runtime = createTestRuntime({ level: 'debug' });
  const state = new ServingState();
  state.config = mustCompile(yaml, runtime);
  const server = createHttpAuthzServer(state, runtime, { decisionSink: runtime.decisionSink, ...opts });
  const port = await server.listen(0, '127.0.0.1');
  cleanup.push(async () => {
    await server.close();
    runtime.shared.disposeAll();
  });
  return { at: `127.0.0.1:${port}`, server, runtime, state };
}

const get = (path: string, extra = '') => Buffer.from(`GET ${path} HTTP/1.1\r\nHost: h\r\n${extra}\r\n`, 'latin1');
const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
const handedOver = (rt: TestRuntime) => rt.logs.filter((l) => l.includes('connection handed to node:http')).length;

describe('HTTP/1.1 fast path connections', () => {
  it('dates every answer with the current second, as node:http does (made once per second)', async () => {
    const { at } = await listener(settings());
    const s = await open(at);
    cleanup.push(() => void s.destroy());
    const dateOf = async () => {
      s.write(get('/healthz'));
      const [a] = await readAnswers(s, 1, true);
      const line = a!.headers.find((h) => h.startsWith('Date: '));
      expect(line, a!.headers.join('|')).toBeDefined();
      return line!.slice(6);
    };
    const first = await dateOf();
    expect(first).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(Math.abs(Date.parse(first) - Date.now())).toBeLessThan(2000);
    // the next second's answers carry the next second's date
    let later = first;
    await waitUntil(async () => (later = await dateOf()) !== first, { what: 'a Date of the next second', timeoutMs: 3000 });
    expect(Date.parse(later) - Date.parse(first)).toBeGreaterThanOrEqual(1000);
    expect(Math.abs(Date.parse(later) - Date.now())).toBeLessThan(2000);
  });

  it('keeps one connection for many requests; Connection: close ends it after the answer', async () => {
    const { at, runtime } = await listener(settings());
    const s = await open(at);
    cleanup.push(() => void s.destroy());
    for (let i = 0; i < 5; i++) {
      s.write(get('/healthz'));
      const [a] = await readAnswers(s, 1);
      expect(a!.status).toBe('HTTP/1.1 200 OK');
      expect(a!.headers).toContain('Connection: keep-alive');
    }
    s.write(get('/envoy/x', 'Connection: close\r\n'));
    const [last] = await readAnswers(s, 1);
    expect(last!.status).toBe('HTTP/1.1 200 OK');
    expect(last!.headers).toContain('Connection: close');
    await closed(s);
    expect(handedOver(runtime)).toBe(0);
  });

  it('answers pipelined requests in order behind an asynchronous decision (JWKS fetched by the first)', async () => {
    const jwks = await startJwks();
    cleanup.push(() => jwks.close());
    const { at, runtime } = await listener(settings() + requestAuthentication(jwks.url));
    const alice = await jwks.sign('alice');
    const bob = await jwks.sign('bob');
    const s = await open(at);
    cleanup.push(() => void s.destroy());
    const answers = readAnswers(s, 4);
    s.write(
      Buffer.concat([
        get('/envoy/a', `Authorization: Bearer ${alice}\r\n`),
        get('/healthz'),
        get('/envoy/b', `Authorization: Bearer ${bob}\r\n`),
        get('/nginx'),
      ]),
    );
    await waitUntil(() => jwks.requests > 0, { what: 'the JWKS fetch' });
    // the first Check waits for the keys: nothing may be answered yet, not even /healthz
    expect(runtime.logs.filter((l) => l.includes('"component":"decision"'))).toEqual([]);
    jwks.release();
    const [a, h, b2, n] = await answers;
    expect([a!.status, a!.headers.find((x) => x.startsWith('x-sub'))]).toEqual(['HTTP/1.1 200 OK', 'x-sub: alice']);
    expect([h!.status, h!.body]).toEqual(['HTTP/1.1 200 OK', 'ok\n']);
    expect([b2!.status, b2!.headers.find((x) => x.startsWith('x-sub'))]).toEqual(['HTTP/1.1 200 OK', 'x-sub: bob']);
    expect(n!.status).toBe('HTTP/1.1 403 Forbidden');
  });

  it('stops reading while a client does not read its answers, then answers everything in order', async () => {
    const { at, runtime } = await listener(settings());
    const big = 'x'.repeat(16_000);
    const one = get('/nginx;namespace=other', `X-Original-URI: /a\r\nX-Original-Method: GET\r\nAuthorization: Basic ${big}\r\nX-Request-Id: `);
    const n = 600; // ~10 MB of answers: more than the loopback socket buffers hold
    const reqs = Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.concat([one.subarray(0, one.length - 2), Buffer.from(`${i}\r\n\r\n`)])));
    const s = await open(at);
    cleanup.push(() => void s.destroy());
    s.pause();
    s.write(reqs);
    const decided = () => runtime.logs.filter((l) => l.includes('"component":"decision"')).length;
    // the server answers until the socket buffers are full, then waits for 'drain'
    let last = -1;
    let stable = 0;
    await waitUntil(
      () => {
        const d = decided();
        stable = d > 0 && d === last ? stable + 1 : 0;
        last = d;
        return stable >= 5;
      },
      { what: 'the server to stop answering', intervalMs: 30, timeoutMs: 10_000 },
    );
    expect(decided()).toBeLessThan(n);
    s.resume();
    const answers = await readAnswers(s, n);
    expect(answers.length).toBe(n);
    expect(answers.every((a) => a.status === 'HTTP/1.1 200 OK' && a.headers.includes(`authorization: Basic ${big}`))).toBe(true);
    const ids = runtime.logs.filter((l) => l.includes('"component":"decision"')).map((l) => JSON.parse(l).request_id);
    expect(ids).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  }, 30_000);

  it('closes idle connections and stalled heads or bodies from one periodic sweep', async () => {
    const { at } = await listener(settings(), { keepAliveTimeoutMs: 300, headersTimeoutMs: 300, bodyTimeoutMs: 300 });
    // in use: requests 100 ms apart keep the connection past its 300 ms idle timeout
    const busy = await open(at);
    cleanup.push(() => void busy.destroy());
    for (let i = 0; i < 8; i++) {
      busy.write(get('/healthz'));
      const [a] = await readAnswers(busy, 1);
      expect(a!.headers).toContain('Keep-Alive: timeout=0');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(busy.destroyed).toBe(false);
    // idle after an answer; a head that never ends; a body that never ends: all closed, no answer
    const started = Date.now();
    const idle = rawExchange(at, [get('/healthz')], { halfClose: false });
    const head = rawExchange(at, [Buffer.from('GET /envoy/x HTTP/1.1\r\nHost: h\r\n')], { halfClose: false });
    const body = rawExchange(at, [Buffer.from('POST /envoy/x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc')], { halfClose: false });
    const [i, h, b] = await Promise.all([idle, head, body]);
    expect(parseAnswers(i).map((a) => a.status)).toEqual(['HTTP/1.1 200 OK']);
    expect([h.length, b.length]).toEqual([0, 0]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('graceful close: idle connections at once, a request in flight answered with Connection: close', async () => {
    const jwks = await startJwks();
    cleanup.push(() => jwks.close());
    const { at, server, state } = await listener(settings() + requestAuthentication(jwks.url, false));
    const idle = await open(at);
    idle.write(get('/healthz'));
    await readAnswers(idle, 1);
    // a connection with a request whose body is still arriving (its head is read before the
    // request below, sent later, is seen in flight)
    const body = await open(at);
    cleanup.push(() => void body.destroy());
    await new Promise<void>((r) => body.write('POST /envoy/b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab', () => r()));
    const inFlight = await open(at);
    cleanup.push(() => void idle.destroy(), () => void inFlight.destroy());
    const answer = readAnswers(inFlight, 1);
    inFlight.write(get('/envoy/a', `Authorization: Bearer ${await jwks.sign('alice')}\r\n`));
    await waitUntil(() => state.inflight > 0, { what: 'the request in flight' });
    const done = server.close();
    await closed(idle);
    expect(inFlight.destroyed).toBe(false);
    jwks.release();
    const [a] = await answer;
    expect(a!.status).toBe('HTTP/1.1 200 OK');
    expect(a!.headers).toContain('connection: close');
    await closed(inFlight);
    const rest = readAnswers(body, 1);
    body.write('cd');
    const [b] = await rest;
    expect([b!.status, b!.headers.includes('connection: close')]).toEqual(['HTTP/1.1 200 OK', true]);
    await closed(body);
    await done;
  });

  it('hands a connection to node:http at its first request outside the strict subset, after answering the ones before', async () => {
    const { at, runtime } = await listener(settings());
    const s = await open(at);
    cleanup.push(() => void s.destroy());
    s.write(get('/healthz'));
    expect((await readAnswers(s, 1))[0]!.body).toBe('ok\n');
    const answers = readAnswers(s, 3);
    s.write(
      Buffer.concat([
        get('/envoy/x'),
        Buffer.from('POST /envoy/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'),
        get('/readyz'),
      ]),
    );
    const [x, y, r] = await answers;
    expect([x!.status, y!.status, r!.status]).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(r!.body).toBe('ok\n');
    expect(handedOver(runtime)).toBe(1);
    // node:http answers the rest of that connection (its own framing: no Keep-Alive timeout change)
    s.write(get('/envoy/z'));
    expect((await readAnswers(s, 1))[0]!.status).toBe('HTTP/1.1 200 OK');
    expect(handedOver(runtime)).toBe(1);
  });

  it('writes a non-ASCII claim header as its UTF-8 bytes (as Envoy does from a gRPC answer), on both transports', async () => {
    const jwks = await startJwks();
    cleanup.push(() => jwks.close());
    jwks.release();
    for (const fast of [true, false]) {
      const { at } = await listener(settings(`    http1FastPath: ${fast}\n`) + requestAuthentication(jwks.url));
      for (const sub of ['Jos\u00e9', '\u65e5\u672c', 'a\ud800b']) {
        const token = await jwks.sign(sub);
        const raw = await rawExchange(at, [get('/envoy/a', `Authorization: Bearer ${token}\r\n`)]);
        const head = raw.subarray(0, raw.indexOf('\r\n\r\n'));
        expect(head.toString('latin1'), `fast path ${fast}`).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
        // a lone surrogate becomes U+FFFD, as in the gRPC answer
        const bytes = Buffer.from(sub.replace(/[\ud800-\udfff]/g, '\ufffd'), 'utf8');
        expect(head.includes(Buffer.concat([Buffer.from('x-sub: ', 'latin1'), bytes, Buffer.from('\r\n', 'latin1')])), `fast path ${fast}, ${JSON.stringify(sub)}`).toBe(true);
      }
    }
  });

  it('reads a non-ASCII request header value as UTF-8, as the gRPC Check carries it (fast path, node:http, HTTP/2)', async () => {
    const policy = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: team, namespace: default}
spec:
  action: ALLOW
  rules: [{when: [{key: "request.headers[x-team]", values: ["\u00e9quipe-\u65e5\u672c"]}]}]
`;
    const team = (v: string) => get('/envoy/a', `x-team: ${Buffer.from(v, 'utf8').toString('latin1')}\r\n`);
    for (const fast of [true, false]) {
      const { at } = await listener(settings(`    http1FastPath: ${fast}\n`) + policy);
      const out = parseAnswers(await rawExchange(at, [Buffer.concat([team('\u00e9quipe-\u65e5\u672c'), team('equipe')])]));
      expect(out.map((a) => a.status), `fast path ${fast}`).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 403 Forbidden']);
      if (!fast) {
        const h2 = connect(`http://${at}`);
        cleanup.push(() => void h2.close());
        const status = await new Promise<number>((resolve, reject) => {
          const q = h2.request({ ':path': '/envoy/a', ':authority': 'h', 'x-team': Buffer.from('\u00e9quipe-\u65e5\u672c', 'utf8').toString('latin1') });
          q.on('response', (h) => (q.resume(), resolve(Number(h[':status']))));
          q.on('error', reject);
          q.end();
        });
        expect(status).toBe(200);
      }
    }
  });

  it('answers 500 (ERR_INTERNAL), never the allow, when an answer header cannot be written (both transports)', async () => {
    const jwks = await startJwks();
    cleanup.push(() => jwks.close());
    jwks.release();
    for (const fast of [true, false]) {
      const { at, runtime } = await listener(settings(`    http1FastPath: ${fast}\n`) + requestAuthentication(jwks.url));
      // a subject with a control character no HTTP/1.1 header may carry (CR, LF and NUL are refused earlier, 400)
      const token = await jwks.sign('a\u0001b');
      const out = parseAnswers(await rawExchange(at, [get('/envoy/a', `Authorization: Bearer ${token}\r\n`), get('/healthz')]));
      expect(out.map((a) => [a.status, a.body]), `fast path ${fast}`).toEqual([
        ['HTTP/1.1 500 Internal Server Error', 'ext_authz: internal error'],
        ['HTTP/1.1 200 OK', 'ok\n'],
      ]);
      const text = await runtime.metrics.registry.metrics();
      expect(text).toMatch(/obo_authz_checks_total\{decision="deny",reason="ERR_INTERNAL",transport="http"\} 1/);
    }
  });

  it('over TLS (ALPN http/1.1): answers on the fast path, then hands the TLS connection to node:http', async () => {
    const pki = makeTestPki();
    cleanup.push(() => pki.remove());
    const { at, runtime } = await listener(settings(), { tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) } });
    const i = at.lastIndexOf(':');
    const s = await new Promise<Socket>((resolve, reject) => {
      const c = tlsConnect({ host: at.slice(0, i), port: Number(at.slice(i + 1)), ca: readFileSync(pki.caCert), servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => resolve(c));
      c.once('error', reject);
    });
    cleanup.push(() => void s.destroy());
    const answers = readAnswers(s, 4);
    s.write(
      Buffer.concat([
        get('/healthz'),
        get('/envoy/x'),
        Buffer.from('POST /envoy/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'),
        get('/readyz'),
      ]),
    );
    const got = await answers;
    expect(got.map((a) => a.status)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect([got[0]!.body, got[3]!.body]).toEqual(['ok\n', 'ok\n']);
    expect(handedOver(runtime)).toBe(1);
  });

  it('is off with httpAuthz.http1FastPath: false (every connection is node:http)', async () => {
    const { at, runtime } = await listener(settings('    http1FastPath: false\n'));
    const out = await rawExchange(at, [Buffer.concat([get('/healthz'), get('/envoy/x')])]);
    expect(parseAnswers(out).map((a) => a.status)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(handedOver(runtime)).toBe(0);
  });
});
