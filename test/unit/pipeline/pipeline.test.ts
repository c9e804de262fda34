/** The pipeline never throws and never fails open. */
import { describe, expect, it } from 'vitest';
import type { CompiledConfig } from '../../../src/pipeline/compile.js';
import { buildRequestContext, remoteIpFrom, parseQuery, parseCookies, namespaceFromPrincipal } from '../../../src/core/context.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { DEFAULT_SETTINGS } from '../../../src/config/settings.js';
import { mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { httpRequest } from '../../helpers/server.js';

describe('evaluate()', () => {
  it('turns an exception inside a stage into a 500 deny (ERR_INTERNAL), never an allow', async () => {
    const rt = createTestRuntime();
    const good = mustCompile('apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n', rt);
    const broken = {
      ...good,
      get authn(): never {
        throw new Error('boom with secret eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2ln');
      },
    } as unknown as CompiledConfig;
    const d = await evaluate(httpRequest({}), broken, rt);
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_INTERNAL');
    expect(d.httpStatus).toBe(500);
    expect(rt.logs.join('')).toContain('internal error in pipeline');
    expect(rt.logs.join('')).not.toContain('c2lnbmF0dXJlc2ln');
  });

  it('denies with 503 ERR_UNAVAILABLE when no config is loaded', async () => {
    const d = await evaluate(httpRequest({}), null, createTestRuntime());
    expect(d.allow).toBe(false);
    expect(d.reason).toBe('ERR_UNAVAILABLE');
    expect(d.httpStatus).toBe(503);
  });

  it('answers ERR_DEADLINE at once when the deadline has already passed', async () => {
    const rt = createTestRuntime();
    const cfg = mustCompile('apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n', rt);
    const d = await evaluate(httpRequest({}), cfg, rt, { deadline: Date.now() + 5 });
    expect(d.reason).toBe('ERR_DEADLINE');
    expect(d.httpStatus).toBe(503);
  });
});

describe('RequestContext', () => {
  const settings = { ...DEFAULT_SETTINGS, trustedProxyHops: 1 };
  it('splits path and query, lower-cases headers, reads header_map raw values, and derives the workload', () => {
    const raw = httpRequest({
      path: '/a/b?access_token=x&y=1&y=2',
      headers: { 'X-Forwarded-For': '1.1.1.1, 2.2.2.2, 10.0.0.7', Cookie: 'a=1; session="s v"' },
      destinationPrincipal: 'spiffe://td/ns/payments/sa/api',
    });
    raw.attributes!.request!.http!.header_map = { headers: [{ key: 'X-Raw', raw_value: Buffer.from('raw-value') }] };
    const ctx = buildRequestContext(raw, { settings });
    expect(ctx.path).toBe('/a/b');
    expect(ctx.query).toBe('access_token=x&y=1&y=2');
    expect(ctx.queryParams.get('y')).toEqual(['1', '2']);
    expect(ctx.header('x-forwarded-for')).toBe('1.1.1.1, 2.2.2.2, 10.0.0.7');
    expect(ctx.header('x-raw')).toBe('raw-value');
    expect(ctx.cookie('session')).toBe('s v');
    expect(ctx.remoteIp).toBe('2.2.2.2');
    expect(ctx.workload.namespace).toBe('payments');
    expect(ctx.workload.hasLabels).toBe(false);
  });

  it('reads lower-case headers directly, and joins case variants like Envoy would have', () => {
    const plain = buildRequestContext(httpRequest({ headers: { authorization: 'Bearer a', 'x-a': '1' } }), { settings });
    expect(plain.header('authorization')).toBe('Bearer a');
    expect(plain.header('x-a')).toBe('1');
    // the decoded map is a plain object: inherited names are not headers
    expect(plain.header('constructor')).toBeUndefined();
    expect(plain.header('toString')).toBeUndefined();
    expect(plain.header('missing')).toBeUndefined();
    expect([...plain.headers.entries()].filter(([k]) => !k.startsWith(':'))).toEqual(
      expect.arrayContaining([
        ['authorization', 'Bearer a'],
        ['x-a', '1'],
      ]),
    );
    const mixed = buildRequestContext(httpRequest({ headers: { 'X-A': '1', 'x-a': '2', Authorization: 'Bearer b' } }), { settings });
    expect(mixed.header('x-a')).toBe('1,2');
    expect(mixed.header('authorization')).toBe('Bearer b');
    expect(mixed.headers.get('x-a')).toBe('1,2');
  });

  it('prefers context_extensions for namespace and labels', () => {
    const ctx = buildRequestContext(
      httpRequest({ contextExtensions: { namespace: 'agents', 'label.app': 'mcp', backend: 'github' }, destinationPrincipal: 'spiffe://td/ns/other/sa/x' }),
      { settings: DEFAULT_SETTINGS },
    );
    expect(ctx.workload).toMatchObject({ namespace: 'agents', labels: { app: 'mcp' }, hasLabels: true, backend: 'github' });
  });

  it('uses Settings.workloadLabels when the request carries none', () => {
    const ctx = buildRequestContext(httpRequest({}), { settings: { ...DEFAULT_SETTINGS, workloadLabels: { app: 'side' } } });
    expect(ctx.workload.labels).toEqual({ app: 'side' });
    expect(ctx.workload.hasLabels).toBe(true);
    expect(ctx.workload.namespace).toBe('default');
  });

  // Envoy's documented edge example: use_remote_address + 1 trusted hop, peer 192.0.2.5,
  // XFF "203.0.113.128, 203.0.113.10, 192.0.2.1" -> trusted client 192.0.2.1, whether or not
  // the peer was already appended when the header reached ext_authz.
  it.each([
    ['1.1.1.1', 0, '9.9.9.9', '9.9.9.9'],
    ['203.0.113.128, 203.0.113.10, 192.0.2.1', 1, '192.0.2.5', '192.0.2.1'],
    ['203.0.113.128, 203.0.113.10, 192.0.2.1, 192.0.2.5', 1, '192.0.2.5', '192.0.2.1'],
    ['203.0.113.128, 203.0.113.10, 192.0.2.1, 192.0.2.5', 2, '192.0.2.5', '203.0.113.10'],
    ['1.1.1.1', 2, '9.9.9.9', '9.9.9.9'],
    ['1.1.1.1', 5, '9.9.9.9', '9.9.9.9'],
    [undefined, 1, '9.9.9.9', '9.9.9.9'],
  ])('remote.ip from xff %s with %i hops (peer %s) = %s', (xff, hops, peer, want) => {
    expect(remoteIpFrom(xff, hops, peer)).toBe(want);
  });

  it('parses queries, cookies and SPIFFE namespaces defensively', () => {
    expect(parseQuery('a=%ZZ&b=c+d&&e')).toEqual(new Map([['a', ['%ZZ']], ['b', ['c d']], ['e', ['']]]));
    expect(parseCookies('x; a=1; a=2')).toEqual(new Map([['a', '1']]));
    expect(namespaceFromPrincipal('spiffe://cluster.local/ns/foo/sa/bar')).toBe('foo');
    expect(namespaceFromPrincipal('spiffe://cluster.local/foo')).toBe('');
  });
});
