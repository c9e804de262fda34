/**
 * Two real server processes (the CLI, as deployed) sharing one real redis-server: a user
 * logs in through one and is served by the other, and the shared exchange cache makes one
 * STS call for both replicas, also when they miss at the same moment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadProtos } from '../../src/grpc/proto.js';
import type { RawCheckRequest } from '../../src/core/context.js';
import type { CheckResponseObject } from '../../src/respond/respond.js';
import { Browser, locationOf, pathOf } from '../helpers/browser.js';
import { startTestIdp, type TestIdp } from '../helpers/oidc-idp.js';
import { startTestRedis, type TestRedis } from '../helpers/redis.js';
import { oidcLoginYaml } from '../helpers/login-config.js';
import { registerLogSink, rememberSecret } from '../helpers/secrets.js';
import { setHeaders } from '../helpers/server.js';
import { tempDir } from '../helpers/tmp.js';

const APP = 'app.test';
const SECRET = `client-${randomBytes(12).toString('hex')}`;
const REDIS_PASSWORD = `redis-${randomBytes(12).toString('hex')}`;

interface Replica {
  child: ChildProcess;
  client: grpc.Client;
  check(req: RawCheckRequest): Promise<CheckResponseObject>;
}

async function startReplica(dir: string): Promise<Replica> {
  const child = spawn(process.execPath, ['dist/src/main.js', 'serve', '--config', dir, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  registerLogSink(lines);
  let out = '';
  child.stderr!.on('data', (d) => lines.push(String(d)));
  const addr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start-up line: ${out.slice(-800)}`)), 15_000);
    child.stdout!.on('data', (d) => {
      out += String(d);
      lines.push(String(d));
      const line = out.split('\n').find((l) => l.includes('"grpcAddress"'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { grpcAddress: string }).grpcAddress);
      }
    });
    child.on('exit', (code) => reject(new Error(`replica exited ${code}: ${out.slice(-800)}`)));
  });
  const { AuthorizationClient } = loadProtos();
  const client = new AuthorizationClient(addr, grpc.credentials.createInsecure());
  return {
    child,
    client,
    check: (req) =>
      new Promise((resolve, reject) =>
        (client as unknown as Record<string, Function>)['Check']!(req, { deadline: Date.now() + 5000 }, (e: Error | null, r: CheckResponseObject) => (e ? reject(e) : resolve(r))),
      ),
  };
}

async function stopReplica(r: Replica | undefined): Promise<void> {
  if (!r) return;
  r.client.close();
  if (r.child.exitCode !== null) return;
  const exited = new Promise<void>((res) => r.child.once('exit', () => res()));
  r.child.kill('SIGKILL');
  await exited;
}

let idp: TestIdp;
let redis: TestRedis;
let sts: Server;
let stsCalls = 0;
let p1: Replica;
let p2: Replica;
let admin: Redis;

beforeAll(async () => {
  idp = await startTestIdp({ clientSecret: SECRET, redirectUris: [`https://${APP}/oauth2/callback`], postLogoutRedirectUris: [] });
  redis = await startTestRedis({ password: REDIS_PASSWORD });
  // A remote STS (RFC 8693) that counts its calls and answers a little slowly.
  sts = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += String(c)));
    req.on('end', () => {
      stsCalls++;
      const subject = new URLSearchParams(body).get('subject_token') ?? '';
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ access_token: `exchanged-${randomBytes(16).toString('hex')}-${subject.length}`, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token', token_type: 'Bearer', expires_in: 300 }));
      }, 100);
    });
  });
  await new Promise<void>((r) => sts.listen(0, '127.0.0.1', r));
  const stsUrl = `http://127.0.0.1:${(sts.address() as AddressInfo).port}/token`;

  const dir = tempDir('obo-replicas-');
  const files: Record<string, string> = {
    'client-secret': SECRET,
    'session.key': randomBytes(32).toString('base64'),
    'cache.key': randomBytes(32).toString('base64'),
    'redis-password': REDIS_PASSWORD,
    'config.yaml': `
${oidcLoginYaml(idp.issuer, APP, ['email', 'offline_access'], '')}  session:
    keyFiles: [session.key]
    redis: {address: "127.0.0.1:${redis.port}", passwordFile: redis-password}
---
apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: corp-sts, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: ${stsUrl}
    clientAuthentication: {method: client_secret_basic, clientId: obo, clientSecret: s3cr3t-sts}
---
apiVersion: obo-authz.dev/v1alpha1
kind: TokenExchangePolicy
metadata: {name: api, namespace: istio-system}
spec:
  match: {paths: ["/api/*"]}
  target: {audience: "https://api.internal"}
  sts: corp-sts
  cache:
    shared: {address: "127.0.0.1:${redis.port}", passwordFile: redis-password, keyFiles: [cache.key]}
`,
  };
  for (const [n, t] of Object.entries(files)) writeFileSync(join(dir, n), t);
  [p1, p2] = await Promise.all([startReplica(dir), startReplica(dir)]);
  admin = new Redis({ host: '127.0.0.1', port: redis.port, password: REDIS_PASSWORD, lazyConnect: true, maxRetriesPerRequest: 1 });
  rememberSecret(SECRET);
  rememberSecret(REDIS_PASSWORD);
}, 40_000);

afterAll(async () => {
  admin?.disconnect();
  await Promise.all([stopReplica(p1), stopReplica(p2)]);
  await new Promise<void>((r) => (sts ? sts.close(() => r()) : r()));
  await redis?.close();
  await idp?.close();
});

async function loginThrough(r: Replica, path: string): Promise<Browser> {
  const b = new Browser(APP, (req) => r.check(req));
  const first = await b.app(path);
  const cb = await b.followToApp(locationOf(first)!);
  const done = await b.app(pathOf(cb));
  expect((done.dynamic_metadata.fields['reason'] as { stringValue: string }).stringValue).toBe('LOGIN_CALLBACK');
  return b;
}

describe('replicas sharing one Redis', () => {
  it('logs in through one replica and is served by the other, with one STS call for both', async () => {
    const b = await loginThrough(p1, '/api/items');
    b.useChecker((req) => p2.check(req));
    const before = stsCalls;
    const viaP2 = await b.app('/api/items');
    expect(viaP2.status.code).toBe(0);
    expect((viaP2.dynamic_metadata.fields['principal'] as { stringValue: string }).stringValue).toBe(`${idp.issuer}/alice`);
    const token = setHeaders(viaP2)['authorization']!;
    expect(token).toMatch(/^Bearer exchanged-/);
    rememberSecret(token.slice(7));
    expect(stsCalls - before).toBe(1);
    // The other replica misses locally, finds the token in Redis: no second STS call.
    b.useChecker((req) => p1.check(req));
    const viaP1 = await b.app('/api/items');
    expect(setHeaders(viaP1)['authorization']).toBe(token);
    expect(stsCalls - before).toBe(1);
    // Sealed at rest: the exchanged token is nowhere in Redis in clear.
    const keys = await admin.keys('obo:exchange:x:*');
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(await admin.get(k)).not.toContain(token.slice(7));
  });

  it('refreshes a session once across replicas: the other one waits for the new version', async () => {
    idp.accessTtl = 20;
    const b1 = await loginThrough(p1, '/app/r');
    idp.accessTtl = 300;
    const b2 = new Browser(APP, (req) => p2.check(req));
    for (const n of b1.jar.names(APP)) b2.jar.set(APP, `${n}=${b1.jar.get(APP, n)}`);
    const before = idp.counts.token['refresh_token'] ?? 0;
    const [r1, r2] = await Promise.all([b1.app('/app/r'), b2.app('/app/r')]);
    expect(r1.status.code).toBe(0);
    expect(r2.status.code).toBe(0);
    expect(setHeaders(r1)['authorization']).toBe(setHeaders(r2)['authorization']);
    rememberSecret(setHeaders(r1)['authorization']!.slice(7));
    expect((idp.counts.token['refresh_token'] ?? 0) - before).toBe(1);
  });

  it('two replicas missing at the same moment still make one STS call', async () => {
    idp.user = 'bob';
    try {
      const b1 = await loginThrough(p1, '/api/other');
      const b2 = new Browser(APP, (req) => p2.check(req));
      for (const n of b1.jar.names(APP)) b2.jar.set(APP, `${n}=${b1.jar.get(APP, n)}`);
      const before = stsCalls;
      const [r1, r2] = await Promise.all([b1.app('/api/other'), b2.app('/api/other')]);
      expect(r1.status.code).toBe(0);
      expect(r2.status.code).toBe(0);
      expect(setHeaders(r1)['authorization']).toBe(setHeaders(r2)['authorization']);
      rememberSecret(setHeaders(r1)['authorization']!.slice(7));
      expect(stsCalls - before).toBe(1);
    } finally {
      idp.user = 'alice';
    }
  });
});
