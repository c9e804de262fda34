/** TLS and mutual TLS on both listeners (a shared deployment carries bearer tokens over the network). */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/cli/serve.js';
import { loadProtos } from '../../src/grpc/proto.js';
import { httpsStatus, makeTestPki, type TestPki } from '../helpers/certs.js';
import { httpRequest, startTlsServer } from '../helpers/server.js';
import { removeTempDir, tempDir } from '../helpers/tmp.js';

function healthCheck(address: string, creds: grpc.ChannelCredentials): Promise<number> {
  const { HealthClient } = loadProtos();
  const c = new HealthClient(address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  return new Promise((resolve, reject) =>
    (c as unknown as Record<string, Function>)['Check']!({ service: '' }, { deadline: Date.now() + 3000 }, (e: Error | null, r: { status: number }) => {
      c.close();
      if (e) reject(e);
      else resolve(r.status);
    }),
  );
}

function httpsGet(address: string, path: string, pki: TestPki, withClientCert: boolean): Promise<number> {
  return httpsStatus(address, { path }, pki, withClientCert);
}

describe('TLS listeners', () => {
  let pki: TestPki;
  let server: RunningServer;
  let dir: string;
  beforeAll(async () => {
    pki = makeTestPki();
    dir = tempDir('obo-tls-');
    writeFileSync(join(dir, 's.yaml'), 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n');
    server = await startTlsServer(dir, pki);
  });
  afterAll(async () => {
    await server?.close();
    pki?.remove();
    if (dir) removeTempDir(dir);
  });

  it('serves gRPC over mTLS to a client with a certificate from the trusted CA', async () => {
    const creds = grpc.credentials.createSsl(readFileSync(pki.caCert), readFileSync(pki.clientKey), readFileSync(pki.clientCert));
    expect(await healthCheck(server.grpcAddress, creds)).toBe(1);
    const { AuthorizationClient } = loadProtos();
    const c = new AuthorizationClient(server.grpcAddress, creds, { 'grpc.ssl_target_name_override': 'localhost' });
    const resp = await new Promise<{ status?: { code?: number } }>((res, rej) =>
      (c as unknown as Record<string, Function>)['Check']!(httpRequest({}), (e: Error | null, r: never) => (e ? rej(e) : res(r))),
    );
    c.close();
    expect(resp.status?.code ?? 0).toBe(0);
  });

  it('rejects a gRPC client without a client certificate, and a plaintext client', async () => {
    await expect(healthCheck(server.grpcAddress, grpc.credentials.createSsl(readFileSync(pki.caCert)))).rejects.toBeTruthy();
    await expect(healthCheck(server.grpcAddress, grpc.credentials.createInsecure())).rejects.toBeTruthy();
  });

  it('serves HTTPS with client certificates required', async () => {
    expect(await httpsGet(server.httpAddress, '/readyz', pki, true)).toBe(200);
    await expect(httpsGet(server.httpAddress, '/readyz', pki, false)).rejects.toBeTruthy();
  });
});
