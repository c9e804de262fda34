import { readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestRuntime } from '../../helpers/runtime.js';
import { tempDir } from '../../helpers/tmp.js';
import { createTokenReviewClient, inClusterDefaults, parseServiceAccountUser, tokenReviewIdentity } from '../../../src/kubernetes/tokenreview.js';
import { fixture, json, startLoopback, type Loopback, type Recorded } from './helpers.js';

let srv: Loopback;
let behaviour: (r: Recorded, res: ServerResponse) => void = (_r, res) => json(res, 500, {});
beforeAll(async () => {
  srv = await startLoopback((r, res) => behaviour(r, res));
});
afterAll(() => srv.close());

function fakeSaToken(sub: string, exp: number): string {
  const b = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b({ alg: 'RS256', kid: 'k' })}.${b({ iss: 'https://oidc.eks.example/id/ABC', sub, aud: ['obo-authz'], exp })}.c2lnbmF0dXJl`;
}

const authenticated = (username: string, audiences = ['obo-authz']) => (_r: Recorded, res: ServerResponse) =>
  json(res, 201, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    status: { authenticated: true, user: { username, uid: 'u-1', groups: ['system:serviceaccounts'] }, audiences },
  });

describe('Kubernetes TokenReview client', () => {
  it('POSTs spec.token and spec.audiences with our bearer token and admits a service account', async () => {
    const dir = tempDir('tr-');
    writeFileSync(join(dir, 'token'), 'our-own-sa-token\n');
    behaviour = authenticated('system:serviceaccount:agents:planner');
    const rt = createTestRuntime();
    const c = createTokenReviewClient(rt, { apiServer: srv.url, tokenFile: join(dir, 'token'), audiences: ['obo-authz'] });
    srv.calls.length = 0;
    const tok = fakeSaToken('system:serviceaccount:agents:planner', Math.floor(Date.now() / 1000) + 600);
    const r = await c.review(tok);
    expect(r).toMatchObject({
      ok: true,
      username: 'system:serviceaccount:agents:planner',
      serviceAccount: { namespace: 'agents', name: 'planner' },
      audiences: ['obo-authz'],
      issuer: 'https://oidc.eks.example/id/ABC',
    });
    const call = srv.calls[0]!;
    expect(call.url).toBe('/apis/authentication.k8s.io/v1/tokenreviews');
    expect(call.headers['authorization']).toBe('Bearer our-own-sa-token');
    expect(JSON.parse(call.body)).toEqual({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token: tok, audiences: ['obo-authz'] } });
    if (r.ok) {
      const id = tokenReviewIdentity(r, tok, 'x', 'header:x-actor-token');
      expect(id).toMatchObject({ kind: 'kubernetes', subject: 'system:serviceaccount:agents:planner', principal: 'https://oidc.eks.example/id/ABC/system:serviceaccount:agents:planner', location: 'header:x-actor-token' });
    }
  });

  it('caches results briefly (one API call for repeated reviews) and expires them on the injected clock', async () => {
    behaviour = authenticated('system:serviceaccount:agents:planner');
    const rt = createTestRuntime({ now: Date.now() });
    const c = createTokenReviewClient(rt, { apiServer: srv.url, audiences: ['obo-authz'], cacheTtlMs: 5000 });
    srv.calls.length = 0;
    const tok = fakeSaToken('system:serviceaccount:agents:planner', Math.floor(Date.now() / 1000) + 600);
    await Promise.all([c.review(tok), c.review(tok), c.review(tok)]);
    await c.review(tok);
    expect(srv.calls.length).toBe(1);
    rt.advance(6000);
    await c.review(tok);
    expect(srv.calls.length).toBe(2);
  });

  it('rejects unauthenticated tokens and tokens for other audiences', async () => {
    const rt = createTestRuntime();
    behaviour = (_r, res) => json(res, 201, { status: { authenticated: false, error: 'token expired' } });
    const c = createTokenReviewClient(rt, { apiServer: srv.url, audiences: ['obo-authz'], cacheTtlMs: 0 });
    expect(await c.review('t1')).toMatchObject({ ok: false, kind: 'rejected' });
    behaviour = authenticated('system:serviceaccount:a:b', ['some-other-api']);
    expect(await c.review('t2')).toMatchObject({ ok: false, kind: 'rejected', message: 'token is not valid for the expected audiences' });
    behaviour = authenticated('system:serviceaccount:a:b', []);
    expect(await c.review('t3')).toMatchObject({ ok: false, kind: 'rejected' });
  });

  it('API errors and timeouts are unavailable (not cached)', async () => {
    const rt = createTestRuntime();
    const c = createTokenReviewClient(rt, { apiServer: srv.url, timeoutMs: 100 });
    behaviour = (_r, res) => json(res, 403, { kind: 'Status' });
    expect(await c.review('t')).toMatchObject({ ok: false, kind: 'unavailable' });
    behaviour = () => undefined;
    expect(await c.review('t')).toMatchObject({ ok: false, kind: 'unavailable', message: 'TokenReview timed out after 100ms' });
    behaviour = authenticated('system:serviceaccount:a:b', []);
    expect(await c.review('t')).toMatchObject({ ok: true });
  });

  it('parses service-account usernames and in-cluster defaults', () => {
    expect(parseServiceAccountUser('system:serviceaccount:ns1:sa1')).toEqual({ namespace: 'ns1', name: 'sa1' });
    expect(parseServiceAccountUser('alice')).toBeNull();
    expect(parseServiceAccountUser('system:serviceaccount:ns1')).toBeNull();
    expect(inClusterDefaults({ KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }).apiServer).toBe('https://10.0.0.1:443');
    expect(inClusterDefaults({}).apiServer).toBeUndefined();
  });

  it('talks HTTPS to an API server with a private CA (caFile)', async () => {
    const server = createHttpsServer({ key: readFileSync(fixture('apiserver-tls.key')), cert: readFileSync(fixture('apiserver-tls.crt')) }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const token = (JSON.parse(body) as { spec: { token: string } }).spec.token;
        json(res, 201, { status: { authenticated: token === 'good', user: { username: 'system:serviceaccount:x:y' }, audiences: ['obo-authz'] } });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const rt = createTestRuntime();
      const c = createTokenReviewClient(rt, { apiServer: url, caFile: fixture('apiserver-tls.crt'), audiences: ['obo-authz'] });
      expect(await c.review('good')).toMatchObject({ ok: true, serviceAccount: { namespace: 'x', name: 'y' } });
      expect(await c.review('bad')).toMatchObject({ ok: false, kind: 'rejected' });
      // Without the CA the TLS handshake fails: unavailable, not rejected.
      const noCa = createTokenReviewClient(rt, { apiServer: url, audiences: ['obo-authz'] });
      expect(await noCa.review('good')).toMatchObject({ ok: false, kind: 'unavailable' });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
  it('a private-CA API server that trickles bytes is cut off at the total timeout (node https timeout is only idle)', async () => {
    let timer: NodeJS.Timeout | undefined;
    const server = createHttpsServer({ key: readFileSync(fixture('apiserver-tls.key')), cert: readFileSync(fixture('apiserver-tls.crt')) }, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.write('{"status":');
        // One byte every 50 ms: never idle for the 300 ms timeout, never finished.
        timer = setInterval(() => res.write(' '), 50);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const rt = createTestRuntime();
      const c = createTokenReviewClient(rt, { apiServer: url, caFile: fixture('apiserver-tls.crt'), audiences: ['obo-authz'], timeoutMs: 300 });
      const t0 = Date.now();
      const r = await Promise.race([c.review('good'), new Promise<'hung'>((res) => setTimeout(() => res('hung'), 3000))]);
      expect(r).toMatchObject({ ok: false, kind: 'unavailable', message: 'TokenReview timed out after 300ms' });
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      clearInterval(timer);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('an oversize response body (> 1 MiB) is an unusable answer, over plain HTTP and over a private CA', async () => {
    const huge = (res: ServerResponse) => {
      res.writeHead(201, { 'content-type': 'application/json' });
      // Valid JSON that authenticates, padded past the cap: must not be accepted.
      res.end(JSON.stringify({ status: { authenticated: true, user: { username: 'system:serviceaccount:x:y' }, audiences: ['obo-authz'] }, pad: 'x'.repeat(2 << 20) }));
    };
    behaviour = (_r, res) => huge(res);
    const rt = createTestRuntime();
    const plain = createTokenReviewClient(rt, { apiServer: srv.url, audiences: ['obo-authz'], timeoutMs: 5000 });
    expect(await plain.review('good')).toMatchObject({ ok: false, kind: 'unavailable', message: 'TokenReview API sent an unusable response (body too large)' });

    const server = createHttpsServer({ key: readFileSync(fixture('apiserver-tls.key')), cert: readFileSync(fixture('apiserver-tls.crt')) }, (req, res) => {
      req.resume();
      req.on('end', () => huge(res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const tls = createTokenReviewClient(rt, { apiServer: url, caFile: fixture('apiserver-tls.crt'), audiences: ['obo-authz'], timeoutMs: 5000 });
      expect(await tls.review('good')).toMatchObject({ ok: false, kind: 'unavailable', message: 'TokenReview API sent an unusable response (body too large)' });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
