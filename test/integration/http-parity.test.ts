/**
 * One table, two transports: every case of the RequestAuthentication fixture (and the
 * quick-start requests, with a token exchange) goes to the real server once as a gRPC Check
 * and once as an Envoy http_service authorization request on loopback. Decision, status,
 * body, client headers, upstream headers and removals must be identical, except for what the
 * HTTP transport cannot express, which is listed here:
 *   - removing a token from the query string (query_parameters_to_remove): refused over HTTP
 *     with 403 ERR_TRANSPORT_UNSUPPORTED instead of an allow.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { CheckResponseObject } from '../../src/respond/respond.js';
import { quickstartFiles } from '../helpers/config.js';
import { FRAMING, httpCall, type HttpReply } from '../helpers/http-authz.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { checkRequest, NOW_S, signFixture, type FixtureToken, type ReqOpts } from '../unit/authn/helpers.js';

interface Outcome {
  allow: boolean;
  status: number;
  body: string;
  /** Headers for the client on deny, or upstream headers set on allow. */
  headers: Record<string, string>;
  removed: string[];
  reason: string;
}

const HTTP_SETTINGS = `apiVersion: obo-authz.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec:
  reasonHeader: true
  httpAuthz: {trustedProxies: [127.0.0.1/32]}
`;

function fromGrpc(r: CheckResponseObject): Outcome {
  const allow = (r.status?.code ?? 0) === 0;
  const list = allow ? r.ok_response?.headers ?? [] : r.denied_response?.headers ?? [];
  const headers: Record<string, string> = {};
  for (const h of list) headers[h.header.key.toLowerCase()] = h.header.value;
  const reason = (r.dynamic_metadata?.fields?.['reason'] as { stringValue?: string } | undefined)?.stringValue ?? '';
  if (!allow) headers['content-type'] = 'text/plain; charset=utf-8'; // Envoy's local reply type
  return {
    allow,
    status: allow ? 200 : r.denied_response?.status?.code ?? 403,
    body: allow ? '' : r.denied_response?.body ?? '',
    headers,
    removed: [...(r.ok_response?.headers_to_remove ?? [])].sort(),
    reason,
  };
}

function fromHttp(r: HttpReply): Outcome {
  const allow = r.status === 200;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (!FRAMING.has(k) || (!allow && k === 'content-type')) headers[k] = v;
  const removed = headers['x-envoy-auth-headers-to-remove']?.split(',').sort() ?? [];
  delete headers['x-envoy-auth-headers-to-remove'];
  return { allow, status: r.status, body: r.body, headers, removed, reason: allow ? 'OK' : headers['x-obo-authz-reason'] ?? '' };
}

/** The Envoy http_service request for a CheckRequest's http attributes (path_prefix /envoy). */
function envoyCall(o: ReqOpts, agent: Agent) {
  const params = Object.entries(o.ext ?? {}).map(([k, v]) => `;${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('');
  return {
    method: o.method ?? 'GET',
    path: `/envoy${params}${o.path ?? '/api'}`,
    headers: { host: o.host ?? 'example.com', 'x-forwarded-proto': o.scheme ?? 'https', ...(o.headers ?? {}) },
    agent,
  };
}

async function compare(t: TestServer, agent: Agent, o: ReqOpts): Promise<{ grpc: Outcome; http: Outcome; grpcQuery: string[] }> {
  const g = await t.check(checkRequest(o));
  const h = await httpCall(t.server.httpAuthzAddress, envoyCall(o, agent));
  return { grpc: fromGrpc(g), http: fromHttp(h), grpcQuery: g.ok_response?.query_parameters_to_remove ?? [] };
}

function expectSame(r: { grpc: Outcome; http: Outcome; grpcQuery: string[] }): void {
  if (r.grpcQuery.length > 0) {
    // listed limit: the HTTP answer cannot rewrite the query string
    expect(r.grpc.allow).toBe(true);
    expect([r.http.allow, r.http.status, r.http.reason]).toEqual([false, 403, 'ERR_TRANSPORT_UNSUPPORTED']);
    return;
  }
  expect(r.http).toEqual(r.grpc);
}

describe('the RequestAuthentication table through gRPC and HTTP', () => {
  interface Fixture {
    config: string;
    tokens: Record<string, FixtureToken>;
    cases: { name: string; request: ReqOpts }[];
  }
  const fixture = parse(readFileSync(new URL('../fixtures/authn/request-authentication.yaml', import.meta.url), 'utf8')) as Fixture;
  const tokens: Record<string, string> = {};
  const subst = (s: string) => s.replace(/\{\{(\w+)\}\}/g, (_, n: string) => tokens[n]!);
  let t: TestServer;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  beforeAll(async () => {
    const signed = await signFixture(fixture);
    Object.assign(tokens, signed.tokens);
    t = await startTestServer({ '00-settings.yaml': HTTP_SETTINGS, '10-ra.yaml': signed.config }, { httpAuthz: true, runtime: createTestRuntime({ now: NOW_S * 1000 }) });
  });
  afterAll(async () => {
    agent.destroy();
    await t?.close();
  });

  for (const c of fixture.cases) {
    it(c.name, async () => {
      const o = { ...c.request, path: c.request.path ? subst(c.request.path) : undefined };
      o.headers = Object.fromEntries(Object.entries(c.request.headers ?? {}).map(([k, v]) => [k, subst(v)]));
      expectSame(await compare(t, agent, o));
    });
  }

  it('covers allows, denies, upstream headers, removals and the query limit', async () => {
    const all = await Promise.all(
      fixture.cases.map((c) =>
        t.check(checkRequest({ ...c.request, path: c.request.path ? subst(c.request.path) : undefined, headers: Object.fromEntries(Object.entries(c.request.headers ?? {}).map(([k, v]) => [k, subst(v)])) })),
      ),
    );
    const outs = all.map(fromGrpc);
    expect(outs.filter((o) => o.allow).length).toBeGreaterThan(5);
    expect(new Set(outs.filter((o) => !o.allow).map((o) => o.status))).toEqual(new Set([401, 403]));
    expect(outs.some((o) => o.allow && Object.keys(o.headers).length > 0 && o.removed.length > 0)).toBe(true);
    expect(all.some((r) => (r.ok_response?.query_parameters_to_remove ?? []).length > 0)).toBe(true);
  });
});

describe('the quick-start requests, with a token exchange, through gRPC and HTTP', () => {
  const QS = 'examples/quickstart';
  const qs = (name: string) => readFileSync(join(QS, name), 'utf8');
  const token = (file: string) => JSON.parse(qs(join('requests', file))).attributes.request.http.headers.authorization as string;
  let t: TestServer;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  beforeAll(async () => {
    t = await startTestServer(
      quickstartFiles(HTTP_SETTINGS),
      { httpAuthz: true },
    );
  });
  afterAll(async () => {
    agent.destroy();
    await t?.close();
  });

  const cases: [string, ReqOpts][] = [
    ['allowed: claim headers and the same exchanged token', { method: 'POST', path: '/mcp', host: 'mcp.example.com', headers: { authorization: token('allowed.json'), 'x-user-sub': 'spoofed', 'x-actor-token': 'x' } }],
    ['expired token', { method: 'POST', path: '/mcp?x=1', host: 'mcp.example.com', headers: { authorization: token('expired-token.json') } }],
    ['no token', { method: 'POST', path: '/mcp', host: 'mcp.example.com' }],
    ['open health path', { method: 'GET', path: '/healthz', host: 'mcp.example.com' }],
  ];
  for (const [name, o] of cases) {
    it(name, async () => {
      const r = await compare(t, agent, { ...o, ext: { namespace: 'default' } });
      expectSame(r);
      if (name.startsWith('allowed')) expect(r.http.headers['authorization']).toMatch(/^Bearer ey/);
    });
  }
});
