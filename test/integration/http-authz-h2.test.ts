/**
 * The HTTP authorization listener over HTTP/2 (h2c prior knowledge, as Envoy's HTTP/2
 * clusters speak it): a real node:http2 client on loopback against the real server. The
 * request head limit holds as on HTTP/1.1: a header list over httpAuthz.maxHeaderBytes is
 * answered 431 and counted with a reason code; one over the advertised hard cap is reset by
 * the HTTP/2 layer before any handler runs. Never an allow.
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quickstartFiles } from '../helpers/config.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { h2HardCap, h2HeaderListSize } from '../../src/http/authz-server.js';

const LIMIT = 8192;
const SETTINGS = `${readFileSync('examples/quickstart/00-settings.yaml', 'utf8').trimEnd()}
  httpAuthz:
    trustedProxies: [127.0.0.1/32]
    maxHeaderBytes: ${LIMIT}
`;
const USER = JSON.parse(readFileSync('examples/quickstart/requests/allowed.json', 'utf8')).attributes.request.http.headers.authorization as string;

type Reply = { status: number; sub?: string; body: string } | { reset: string };

function request(s: ClientHttp2Session, headers: Record<string, string>): Promise<Reply> {
  return new Promise((resolve) => {
    const q = s.request({ ':method': 'POST', ':path': '/envoy/mcp', ':authority': 'mcp.example.com', ...headers });
    let body = '';
    q.setEncoding('utf8');
    q.on('response', (h) => {
      q.on('data', (d: string) => (body += d));
      q.on('end', () => resolve({ status: Number(h[':status']), sub: h['x-user-sub'] as string | undefined, body }));
    });
    q.on('error', (e: NodeJS.ErrnoException) => resolve({ reset: e.message }));
    q.end();
  });
}

describe('HTTP authorization listener over HTTP/2', () => {
  let t: TestServer;
  let s: ClientHttp2Session;
  const deniedBadRequest = async () => {
    const text = await t.server.runtime.metrics.registry.metrics();
    return Number(/obo_authz_checks_total\{decision="deny",reason="ERR_BAD_REQUEST",transport="http"\} (\d+)/.exec(text)?.[1] ?? 0);
  };
  beforeAll(async () => {
    t = await startTestServer(quickstartFiles(SETTINGS), { httpAuthz: true });
    s = connect(`http://${t.server.httpAuthzAddress}`);
    s.on('error', () => undefined);
    await new Promise((r) => s.once('remoteSettings', r));
  });
  afterAll(async () => {
    s?.close();
    await t?.close();
  });

  it('advertises the hard cap, not the limit, as its header list size', () => {
    expect(s.remoteSettings.maxHeaderListSize).toBe(h2HardCap(LIMIT));
    expect(h2HardCap(LIMIT)).toBeGreaterThan(LIMIT);
  });

  it('allows a request under the limit, with the upstream claim header', async () => {
    expect(await request(s, { authorization: USER, 'x-pad': 'a'.repeat(2000) })).toMatchObject({ status: 200, sub: 'alice' });
  });

  it('answers a header list over maxHeaderBytes with 431, counted as ERR_BAD_REQUEST, even with a valid token', async () => {
    const before = await deniedBadRequest();
    const pad = 'a'.repeat(LIMIT);
    expect(h2HeaderListSize(['x-pad', pad])).toBeGreaterThan(LIMIT);
    const r = await request(s, { authorization: USER, 'x-pad': pad });
    expect(r).toEqual({ status: 431, sub: undefined, body: 'ext_authz: request header fields too large' });
    expect(await deniedBadRequest()).toBe(before + 1);
    const line = t.runtime.logs.map((l) => JSON.parse(l) as Record<string, unknown>).reverse().find((l) => l['reason'] === 'ERR_BAD_REQUEST');
    expect(line).toMatchObject({ decision: 'deny', status: 431, transport: 'http' });
  });

  it('resets a stream over the hard cap before it reaches the pipeline; the connection stays usable', async () => {
    const before = await deniedBadRequest();
    const r = await request(s, { authorization: USER, 'x-pad': 'a'.repeat(h2HardCap(LIMIT)) });
    expect(r).toHaveProperty('reset');
    expect(await deniedBadRequest()).toBe(before);
    expect(await request(s, { authorization: USER })).toMatchObject({ status: 200, sub: 'alice' });
  });

  it('counts the size as HTTP/2 does: octets of names and values plus 32 per field', () => {
    expect(h2HeaderListSize([':method', 'GET', 'a', 'bc'])).toBe(7 + 3 + 32 + 1 + 2 + 32);
    expect([h2HardCap(8192), h2HardCap(65536)]).toEqual([8192 + 16384, 131072]);
  });
});
