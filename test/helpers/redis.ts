/**
 * A real redis-server for tests (Debian's package, installed by .ci/run), on a free loopback
 * port, its data in a tempDir() folder. stop() shuts it down with a save (SIGTERM saves when a
 * save point is configured), start() brings it back on the same port with the same data, so
 * tests can take Redis away mid-session and give it back. close() stops it for good.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tempDir } from './tmp.js';
import type { TestPki } from './certs.js';

export interface TestRedis {
  readonly port: number;
  readonly password: string;
  readonly dir: string;
  readonly running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startTestRedis(opts: { password: string; tls?: TestPki }): Promise<TestRedis> {
  const dir = tempDir('obo-redis-');
  const port = await freePort();
  let child: ChildProcess | null = null;
  const args = [
    '--bind', '127.0.0.1',
    '--save', '3600 1',
    '--appendonly', 'no',
    '--dir', dir,
    '--dbfilename', 'dump.rdb',
    '--requirepass', opts.password,
    '--daemonize', 'no',
    '--protected-mode', 'yes',
    ...(opts.tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', opts.tls.serverCert, '--tls-key-file', opts.tls.serverKey, '--tls-ca-cert-file', opts.tls.caCert, '--tls-auth-clients', 'no']
      : ['--port', String(port)]),
  ];
  const start = async () => {
    const c = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out.slice(-500)}`)), 10_000);
      const onData = (d: Buffer) => {
        out += String(d);
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      c.stdout!.on('data', onData);
      c.stderr!.on('data', onData);
      c.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${out.slice(-500)}`));
      });
    });
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    port,
    password: opts.password,
    dir,
    get running() {
      return child !== null;
    },
    start,
    stop,
    close: stop,
  };
}
