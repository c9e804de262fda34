/**
 * The CLI's error paths against real listeners: a port in use names its flag, TLS failures
 * say what to pass (--tls-ca, a client certificate, --tls-server-name), a --config path
 * that does not exist is logged loudly by serve, and the built CLI runs from any folder.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { cli, cliProcess, MAIN } from '../helpers/cli.js';
import { makeTestPki, type TestPki } from '../helpers/certs.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { tempDir } from '../helpers/tmp.js';

const REQ = join(process.cwd(), 'examples/quickstart/requests/no-token.json');
const dir = tempDir('obo-cli-errors-');
writeFileSync(join(dir, 's.yaml'), 'apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\n');

let pki: TestPki;
let other: TestPki;
let tls: RunningServer;
let mtls: RunningServer;
let plain: RunningServer;
let busy: Server;
let busyPort: number;

beforeAll(async () => {
  pki = makeTestPki();
  other = makeTestPki();
  const base = { configPaths: [dir], grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', watch: false };
  tls = await startServer({ ...base, runtime: createTestRuntime(), tls: { cert: pki.serverCert, key: pki.serverKey } });
  mtls = await startServer({ ...base, runtime: createTestRuntime(), tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert } });
  plain = await startServer({ ...base, runtime: createTestRuntime() });
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(async () => {
  await Promise.all([tls?.close(), mtls?.close(), plain?.close(), new Promise((r) => busy?.close(r))]);
  pki?.remove();
  other?.remove();
});

describe('TLS failures name the fix', () => {
  const check = (server: string, ...extra: string[]) => cli('check', '--server', server, '--request', REQ, '--timeout', '3s', ...extra);

  it('check --server: plaintext to TLS, TLS to plaintext, an untrusted CA, a name mismatch, a missing client certificate', async () => {
    const cases: [Promise<{ code: number; err: string }>, string][] = [
      [check(tls.grpcAddress), 'if the server uses TLS (serve --tls-cert), pass its CA with --tls-ca FILE'],
      [check(plain.grpcAddress, '--tls-ca', pki.caCert), 'does not speak TLS: leave out --tls-ca'],
      [check(tls.grpcAddress, '--tls-ca', other.caCert), "the server's certificate is not signed by a CA you trust: pass the CA that signed it with --tls-ca FILE"],
      [check(tls.grpcAddress, '--tls-ca', pki.caCert, '--tls-server-name', 'other.example'), 'pass the name it carries with --tls-server-name NAME'],
      [check(mtls.grpcAddress, '--tls-ca', pki.caCert), 'the server requires a client certificate: pass --tls-cert FILE --tls-key FILE'],
      [check('127.0.0.1:1'), 'nothing listens at 127.0.0.1:1 (connection refused)'],
    ];
    for (const [p, hint] of cases) {
      const r = await p;
      expect(r.code).toBe(2);
      expect(r.err).toContain(hint);
    }
    const ok = await check(mtls.grpcAddress, '--tls-ca', pki.caCert, '--tls-cert', pki.clientCert, '--tls-key', pki.clientKey);
    expect(ok.code, ok.err).toBe(0);
    expect((await check(tls.grpcAddress, '--tls-ca', join(dir, 'no-ca.pem'))).err).toContain('--tls-ca');
  });

  it('status --server: the same hints over HTTPS, and the mTLS answer with a client certificate', async () => {
    const status = (server: string, ...extra: string[]) => cli('status', '--server', server, ...extra);
    expect((await status(tls.httpAddress)).err).toContain('pass its CA with --tls-ca FILE');
    expect((await status(plain.httpAddress, '--tls-ca', pki.caCert)).err).toContain('does not speak TLS');
    expect((await status(tls.httpAddress, '--tls-ca', other.caCert)).err).toContain('not signed by a CA you trust');
    expect((await status(mtls.httpAddress, '--tls-ca', pki.caCert)).err).toContain('requires a client certificate');
    const ok = await status(mtls.httpAddress, '--tls-ca', pki.caCert, '--tls-cert', pki.clientCert, '--tls-key', pki.clientKey);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.out).toMatch(/^obo-authz at 127\.0\.0\.1:\d+: SERVING/);
    const gone = await status('127.0.0.1:1');
    expect(gone.code).toBe(2);
    expect(gone.err).toContain('connection refused');
    const wrongPort = await status(plain.grpcAddress, '--timeout', '2s');
    expect(wrongPort.code).toBe(2);
  });

  it('health on a TLS listener points at --health-address', async () => {
    const r = await cli('health', '--server', tls.httpAddress);
    expect(r.code).toBe(2);
    expect(r.err).toContain('give serve a plain health listener with --health-address HOST:PORT');
  });
});

describe('serve start-up errors', () => {
  it('a gRPC, HTTP or health port in use is exit 2 naming the flag and the address', async () => {
    for (const flag of ['--grpc-address', '--http-address', '--health-address']) {
      const addrs: Record<string, string> = { '--grpc-address': '127.0.0.1:0', '--http-address': '127.0.0.1:0', '--health-address': '127.0.0.1:0' };
      addrs[flag] = `127.0.0.1:${busyPort}`;
      const r = cliProcess(['serve', '--config', dir, '--log-level', 'silent', ...Object.entries(addrs).flat()]);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toContain(`obo-authz serve: ${flag} 127.0.0.1:${busyPort}: address already in use`);
      expect(r.err).toContain(`choose another address with ${flag} HOST:PORT`);
    }
  });

  it('unreadable TLS files are exit 2 naming the flag', () => {
    const r = cliProcess(['serve', '--config', dir, '--log-level', 'silent', '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', '--tls-cert', join(dir, 'none.crt'), '--tls-key', pki.serverKey]);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`--tls-cert ${join(dir, 'none.crt')}: cannot read: ENOENT`);
  });

  it('a --config path that does not exist is logged as an error at start-up; the server starts NOT_SERVING', async () => {
    const missing = join(dir, 'not-mounted');
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', missing, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no start-up line: ${out}`)), 10_000);
      child.stdout.on('data', () => {
        if (out.includes('"obo-authz listening"')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL'); // only its start-up log matters here (the drain is tested in cli-serve)
    await exited;
    const line = out.split('\n').find((l) => l.includes('does not exist'));
    expect(line, out).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ level: 'error', path: missing, flag: '--config', msg: `config path ${JSON.stringify(missing)} does not exist: not serving until it appears with a valid config` });
    expect(out).toContain('"serving":false');
  });
});

describe('the built CLI', () => {
  it('runs from any folder: --version, validate and test with absolute paths', () => {
    const elsewhere = tempDir('obo-cwd-');
    {
      const v = cliProcess(['--version'], { cwd: elsewhere });
      expect(v.code).toBe(0);
      expect(v.out.trim()).toMatch(/^\d+\.\d+\.\d+/);
      expect(cliProcess(['validate', join(process.cwd(), 'examples/quickstart')], { cwd: elsewhere }).code).toBe(0);
      const t = cliProcess(['test', join(process.cwd(), 'examples/quickstart/tests')], { cwd: elsewhere });
      expect(t.code, t.out + t.err).toBe(0);
      const c = cliProcess(['check', '--config', join(process.cwd(), 'examples/quickstart'), '--request', REQ], { cwd: elsewhere });
      expect(c.code).toBe(1);
    }
  });
});
