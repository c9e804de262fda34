/**
 * The HTTP authorization transport's pure parts: routing by convention, path normalization,
 * trust in forwarded headers, the raw request each convention builds, the answer formats and
 * the Settings.httpAuthz block with its validate warnings.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_HTTP_AUTHZ, type HttpAuthzSettings } from '../../../src/config/http-authz-settings.js';
import { formatIssue } from '../../../src/config/issues.js';
import { buildCheckRequest, headersOf, isTrustedPeer, normalizePath, route, type HopHeaders, type InboundRequest } from '../../../src/http/authz-request.js';
import { answerFor, denyStatus, httpLimits } from '../../../src/http/authz-response.js';
import { UpstreamMutations } from '../../../src/core/state.js';
import { decision } from '../../helpers/decision.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';

const SETTINGS = (httpAuthz: string) => `apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec:\n  httpAuthz: ${httpAuthz}\n`;

function settings(httpAuthz: string): HttpAuthzSettings {
  return mustCompile(SETTINGS(httpAuthz), createTestRuntime()).settings.httpAuthz!;
}
const TRUSTED = settings('{trustedProxies: [10.0.0.0/8, "::1"]}');

/** As the listener builds it: the end-to-end headers from the raw list, the hop's Host apart. */
function inbound(o: { url: string; method?: string; peer?: string; headers?: Record<string, string> }): InboundRequest {
  const hop: HopHeaders = { host: '', contentLength: undefined, transferEncoding: undefined };
  const headers = headersOf(Object.entries(o.headers ?? {}).flat(), hop);
  return { method: o.method ?? 'GET', url: o.url, peer: () => o.peer ?? '10.1.2.3', protocol: 'HTTP/1.1', headers, host: hop.host };
}
const httpOf = (b: ReturnType<typeof buildCheckRequest>) => (b.ok ? b.raw.attributes!.request!.http! : null);

describe('route', () => {
  it('picks the convention from the first segment, with ;key=value context extensions', () => {
    expect(route('/envoy/api?q=1', DEFAULT_HTTP_AUTHZ)).toEqual({ convention: 'envoy', ext: {}, rest: '/api?q=1' });
    expect(route('/envoy;namespace=shop;label.app=web%20ui/x', DEFAULT_HTTP_AUTHZ)).toEqual({ convention: 'envoy', ext: { namespace: 'shop', 'label.app': 'web ui' }, rest: '/x' });
    expect(route('/nginx', DEFAULT_HTTP_AUTHZ)).toMatchObject({ convention: 'nginx', rest: '' });
    expect(route('/traefik?x', DEFAULT_HTTP_AUTHZ)).toMatchObject({ convention: 'traefik', rest: '?x' });
    expect(route('/envoyx/a', DEFAULT_HTTP_AUTHZ)).toBeNull();
    expect(route('/envoy;namespace', DEFAULT_HTTP_AUTHZ)).toMatch(/expected key=value/);
    expect(route('/envoy;a=%zz', DEFAULT_HTTP_AUTHZ)).toMatch(/percent-encoding/);
  });

  it('routes each request by its own prefix, whatever prefix came before (the last one is kept)', () => {
    const seq: [string, unknown][] = [
      ['/envoy;namespace=a/x', { convention: 'envoy', ext: { namespace: 'a' }, rest: '/x' }],
      ['/envoy;namespace=a?q', { convention: 'envoy', ext: { namespace: 'a' }, rest: '?q' }],
      ['/envoy;namespace=b/x', { convention: 'envoy', ext: { namespace: 'b' }, rest: '/x' }],
      ['/envoy;namespace=a/y', { convention: 'envoy', ext: { namespace: 'a' }, rest: '/y' }],
      ['/envoy;namespace=ab/y', { convention: 'envoy', ext: { namespace: 'ab' }, rest: '/y' }],
      ['/envoy', { convention: 'envoy', ext: {}, rest: '' }],
      ['/nginx/z', { convention: 'nginx', ext: {}, rest: '/z' }],
      ['/nginy/z', null],
      ['/nginx', { convention: 'nginx', ext: {}, rest: '' }],
      ['/', null],
      ['/nginx', { convention: 'nginx', ext: {}, rest: '' }],
    ];
    for (const [url, want] of seq) expect(route(url, DEFAULT_HTTP_AUTHZ), url).toEqual(want);
  });

  it('in a fixed mode every path is that convention and no parameter is read', () => {
    const s = settings('{mode: envoy}');
    expect(route('/nginx;namespace=kube-system/x', s)).toEqual({ convention: 'envoy', ext: {}, rest: '/nginx;namespace=kube-system/x' });
  });
});

describe('normalizePath', () => {
  it.each([
    ['/a/b', '/a/b'],
    ['/a/../b', '/b'],
    ['/a/./b/', '/a/b/'],
    ['//a///b', '/a/b'],
    ['/../../etc', '/etc'],
    ['/a/%2e%2E/b?x=/../y', '/b?x=/../y'],
    ['/a/.', '/a/'],
    ['/', '/'],
  ])('%s -> %s', (a, b) => expect(normalizePath(a)).toBe(b));
});

describe('trust', () => {
  it('matches the peer against the trusted CIDRs (IPv4-mapped IPv6 is its IPv4 address)', () => {
    expect(isTrustedPeer('10.9.8.7', TRUSTED)).toBe(true);
    expect(isTrustedPeer('::ffff:10.9.8.7', TRUSTED)).toBe(true);
    expect(isTrustedPeer('::1', TRUSTED)).toBe(true);
    expect(isTrustedPeer('192.168.0.1', TRUSTED)).toBe(false);
    expect(isTrustedPeer('10.0.0.1', DEFAULT_HTTP_AUTHZ)).toBe(false);
  });

  it('refuses any forwarded header from an untrusted peer, naming it', () => {
    for (const h of ['x-forwarded-for', 'forwarded', 'x-real-ip', 'x-original-uri', 'x-forwarded-host']) {
      const b = buildCheckRequest(inbound({ url: '/envoy/x', peer: '192.168.0.1', headers: { [h]: 'v' } }), TRUSTED, 0);
      expect(b).toMatchObject({ ok: false, reason: 'ERR_UNTRUSTED_PROXY' });
      expect(!b.ok && b.message).toContain(h);
    }
    const custom = settings('{nginx: {uriHeader: X-Uri}}');
    expect(buildCheckRequest(inbound({ url: '/nginx', headers: { 'x-uri': '/' } }), custom, 0)).toMatchObject({ ok: false, reason: 'ERR_UNTRUSTED_PROXY' });
  });

  it('a configured nginx header named like an Object property is looked up as a header only', () => {
    // `constructor` is on every plain object's prototype: absent from the request, it is absent.
    const odd = settings('{nginx: {uriHeader: constructor, methodHeader: toString}}');
    expect(odd.forwardedHeaders.has('constructor')).toBe(true);
    expect(buildCheckRequest(inbound({ url: '/envoy/x', peer: '192.168.0.1', headers: { host: 'h' } }), odd, 0)).toMatchObject({ ok: true });
    const b = buildCheckRequest(inbound({ url: '/envoy/x', peer: '192.168.0.1', headers: { host: 'h', tostring: 'GET' } }), odd, 0);
    expect(b).toMatchObject({ ok: false, reason: 'ERR_UNTRUSTED_PROXY' });
    expect(!b.ok && b.message).toContain('tostring');
  });
});

describe('buildCheckRequest', () => {
  it('envoy: the authorization request is the original request', () => {
    const b = buildCheckRequest(
      inbound({ method: 'POST', url: '/envoy/a/../mcp?x=1', headers: { host: 'mcp.example.com', authorization: 'Bearer t', connection: 'keep-alive', 'content-length': '0', 'x-forwarded-for': '1.2.3.4, 5.6.7.8', 'x-forwarded-proto': 'https', 'x-envoy-expected-rq-timeout-ms': '250' } }),
      TRUSTED,
      1000,
    );
    expect(b.ok && b.deadline).toBe(1250);
    expect(httpOf(b)).toEqual({
      method: 'POST',
      path: '/mcp?x=1',
      host: 'mcp.example.com',
      scheme: 'https',
      protocol: 'HTTP/1.1',
      headers: { authorization: 'Bearer t', 'x-forwarded-for': '1.2.3.4, 5.6.7.8', 'x-forwarded-proto': 'https', 'x-envoy-expected-rq-timeout-ms': '250', ':method': 'POST', ':path': '/mcp?x=1', ':authority': 'mcp.example.com' },
    });
    // the client is the address the proxy appended last
    expect(b.ok && b.raw.attributes!.source!.address!.socket_address!.address).toBe('5.6.7.8');
  });

  it('envoy: an untrusted peer without forwarded headers gets scheme http and no source address', () => {
    const b = buildCheckRequest(inbound({ url: '/envoy', peer: '192.168.0.1', headers: { host: 'h' } }), TRUSTED, 0);
    expect(httpOf(b)).toMatchObject({ path: '/', scheme: 'http' });
    expect(b.ok && b.raw.attributes!.source).toBeNull();
  });

  it('nginx: original URI, method and host from the conventional headers; Host of the subrequest ignored', () => {
    const b = buildCheckRequest(
      inbound({ url: '/nginx', headers: { host: 'obo-authz:9004', 'x-original-uri': '/v1//items?a=b', 'x-original-method': 'DELETE', 'x-forwarded-host': 'api.example.com', 'x-real-ip': '203.0.113.5' } }),
      TRUSTED,
      0,
    );
    expect(httpOf(b)).toMatchObject({ method: 'DELETE', path: '/v1/items?a=b', host: 'api.example.com', headers: { ':authority': 'api.example.com' } });
    expect(httpOf(b)?.headers?.['host']).toBeUndefined();
    expect(b.ok && b.raw.attributes!.source!.address!.socket_address!.address).toBe('203.0.113.5');
    const abs = buildCheckRequest(inbound({ url: '/nginx', headers: { 'x-original-uri': 'https://h.example/p?q', 'x-original-method': 'GET' } }), TRUSTED, 0);
    expect(httpOf(abs)).toMatchObject({ path: '/p?q' });
  });

  it('nginx and traefik: a missing original URI or method, or a bad one, is refused', () => {
    expect(buildCheckRequest(inbound({ url: '/nginx', headers: { 'x-original-method': 'GET' } }), TRUSTED, 0)).toMatchObject({ ok: false, reason: 'ERR_BAD_REQUEST', message: expect.stringContaining('x-original-uri') });
    expect(buildCheckRequest(inbound({ url: '/traefik', headers: { 'x-forwarded-uri': '/' } }), TRUSTED, 0)).toMatchObject({ ok: false, message: expect.stringContaining('x-forwarded-method') });
    expect(buildCheckRequest(inbound({ url: '/traefik', headers: { 'x-forwarded-uri': 'x', 'x-forwarded-method': 'GET' } }), TRUSTED, 0)).toMatchObject({ ok: false, message: expect.stringContaining('not a path') });
    expect(buildCheckRequest(inbound({ url: '/traefik', headers: { 'x-forwarded-uri': '/', 'x-forwarded-method': 'G T' } }), TRUSTED, 0)).toMatchObject({ ok: false, message: expect.stringContaining('method') });
  });

  it('traefik: X-Forwarded-Method/-Uri/-Host/-Proto/-For', () => {
    const b = buildCheckRequest(
      inbound({ url: '/traefik', headers: { host: 'authz', 'x-forwarded-method': 'PUT', 'x-forwarded-uri': '/x', 'x-forwarded-host': 'a.example, b.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '198.51.100.1:4431' } }),
      TRUSTED,
      0,
    );
    expect(httpOf(b)).toMatchObject({ method: 'PUT', path: '/x', host: 'a.example', scheme: 'https' });
    expect(b.ok && b.raw.attributes!.source!.address!.socket_address!.address).toBe('198.51.100.1');
  });

  it('keeps the hop-by-hop headers apart; repeated fields are joined as Envoy joins them', () => {
    const hop: HopHeaders = { host: '', contentLength: undefined, transferEncoding: undefined };
    const h = headersOf(['Host', 'a', 'Connection', 'close', 'Content-Length', '3', 'X-A', '1', 'x-a', '2', 'Cookie', 'a=1', 'cookie', 'b=2', '__proto__', 'x', 'constructor', 'c'], hop);
    expect(hop).toEqual({ host: 'a', contentLength: '3', transferEncoding: undefined });
    expect({ ...h }).toEqual({ 'x-a': '1,2', cookie: 'a=1; b=2', constructor: 'c' });
    expect(Object.getPrototypeOf(h)).toBe(Object.prototype);
  });

  it('passes a forwarded body and rejects paths outside the conventions', () => {
    expect(Buffer.from(httpOf(buildCheckRequest(inbound({ url: '/envoy/x' }), TRUSTED, 0, Buffer.from('{"a":1}')))?.raw_body ?? []).toString()).toBe('{"a":1}');
    expect(buildCheckRequest(inbound({ url: '/metrics' }), TRUSTED, 0)).toMatchObject({ ok: false, status: 404 });
  });
});

describe('answers', () => {
  it('maps deny statuses a proxy would misread', () => {
    expect([200, 302, 400, 401, 403, 404, 429, 500, 503].map((s) => denyStatus('nginx', s))).toEqual([403, 403, 403, 401, 403, 403, 403, 500, 503]);
    expect([200, 204, 302, 400, 503].map((s) => denyStatus('envoy', s))).toEqual([403, 403, 302, 400, 503]);
    expect([201, 400, 503].map((s) => denyStatus('traefik', s))).toEqual([403, 400, 503]);
  });

  it('envoy allow: set headers, then removals not also set; nginx: managed headers state their final value', () => {
    const d = decision({ allow: true });
    d.upstream.setHeader('authorization', 'Bearer new');
    d.upstream.setHeader('x-sub', 'alice');
    d.upstream.removeHeader('x-actor-token');
    d.upstream.removeHeader('x-sub');
    const envoy = answerFor('envoy', d, { authorization: 'Bearer old', 'x-keep': 'k' }, DEFAULT_HTTP_AUTHZ, false);
    expect(envoy).toEqual({ status: 200, body: '', headers: ['authorization', 'Bearer new', 'x-sub', 'alice', 'x-envoy-auth-headers-to-remove', 'x-actor-token'] });
    const s = settings('{managedHeaders: [authorization, x-keep, x-actor-token, x-absent]}');
    const keep = decision({ allow: true });
    keep.upstream.removeHeader('x-actor-token');
    expect(answerFor('nginx', keep, { authorization: 'Bearer old', 'x-keep': 'k', 'x-actor-token': 'a' }, s, false).headers).toEqual(['authorization', 'Bearer old', 'x-keep', 'k']);
  });

  it('deny: text body, client headers and the opt-in reason header', () => {
    const d = decision({ allow: false, reason: 'ERR_JWT_EXPIRED', httpStatus: 401, body: 'Jwt is expired', denyHeaders: [['www-authenticate', 'Bearer realm="x"']] });
    expect(answerFor('traefik', d, {}, DEFAULT_HTTP_AUTHZ, true)).toEqual({
      status: 401,
      body: 'Jwt is expired',
      headers: ['www-authenticate', 'Bearer realm="x"', 'content-type', 'text/plain; charset=utf-8', 'x-obo-authz-reason', 'ERR_JWT_EXPIRED'],
    });
    // a deny that types its own body keeps that type (one content-type)
    const json = decision({ allow: false, reason: 'ERR_RBAC_DENIED', httpStatus: 200, body: '{}', denyHeaders: [['content-type', 'application/json']] });
    expect(answerFor('envoy', json, {}, DEFAULT_HTTP_AUTHZ, false)).toEqual({ status: 403, body: '{}', headers: ['content-type', 'application/json'] });
  });

  it('httpLimits: query rewrites and pseudo-headers cannot be expressed', () => {
    const up = new UpstreamMutations();
    expect(httpLimits(up)).toBeNull();
    up.removeQuery.add('access_token');
    expect(httpLimits(up)).toContain('"access_token"');
    const p = new UpstreamMutations();
    p.setHeader(':path', '/x');
    expect(httpLimits(p)).toContain(':path');
  });
});

describe('Settings.httpAuthz', () => {
  const issues = (yaml: string) => {
    const r = compileYaml(yaml, createTestRuntime(), 'f.yaml');
    return r.issues.map(formatIssue);
  };

  it('defaults, and errors that name the field', () => {
    expect(settings('{}')).toEqual({ ...DEFAULT_HTTP_AUTHZ });
    expect(mustCompile('apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n', createTestRuntime()).settings.httpAuthz).toBeNull();
    expect(issues(SETTINGS('{trustedProxies: [10.0.0.0/33]}'))).toEqual(['f.yaml:5:32: document 1 (Settings/s): spec.httpAuthz.trustedProxies[0]: bad CIDR range (10.0.0.0/33): invalid prefix length']);
    expect(issues(SETTINGS('{mode: haproxy}')).join('\n')).toContain('spec.httpAuthz.mode');
    expect(issues(SETTINGS('{managedHeaders: ["bad header"]}')).join('\n')).toContain('spec.httpAuthz.managedHeaders[0]: invalid header name');
    expect(issues(SETTINGS('{address: nowhere}')).join('\n')).toContain('spec.httpAuthz.address: invalid value "nowhere": must be HOST:PORT');
    expect(issues(SETTINGS('{maxHeaderBytes: 10}')).join('\n')).toContain('spec.httpAuthz.maxHeaderBytes');
  });

  it('validate warns where a config relies on what the HTTP transport cannot do', () => {
    const ra = `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: default}
spec:
  jwtRules:
  - issuer: https://a.example
    jwks: '{"keys":[]}'
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
  - issuer: https://b.example
    jwks: '{"keys":[]}'
    fromHeaders: [{name: authorization, prefix: "Bearer "}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap, namespace: default}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/a/sa/b"]}}]}]
`;
    const warned = issues(SETTINGS('{}') + ra).filter((i) => i.includes('warning'));
    expect(warned).toHaveLength(3);
    expect(warned[0]).toMatch(/spec\.jwtRules\[0\]: warning: .*query parameter "access_token" cannot be removed upstream/);
    expect(warned[1]).toMatch(/spec\.jwtRules\[0\]: warning: .*add "x-sub" to httpAuthz\.managedHeaders/);
    expect(warned[2]).toMatch(/AuthorizationPolicy\/ap\): spec\.rules: warning: .*source\.principals never matches over HTTP/);
    // managed headers, or the envoy convention only, silence the header warning
    expect(issues(SETTINGS('{managedHeaders: [authorization, x-sub]}') + ra).filter((i) => i.includes('managedHeaders'))).toEqual([]);
    expect(issues(SETTINGS('{mode: envoy}') + ra).filter((i) => i.includes('managedHeaders'))).toEqual([]);
    // without the block, no HTTP warning at all
    expect(issues('apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n' + ra).filter((i) => i.includes('HTTP'))).toEqual([]);
  });
});
