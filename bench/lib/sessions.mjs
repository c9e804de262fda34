// Browser-session scenarios (issue 14): an OIDCLogin whose sessions are either sealed into the
// cookie or kept in a redis-server the bench starts (and stops). The sessions are made the way
// the server makes them (sealed with the session key by the server's own code from dist/), so
// the Check path is exactly a logged-in browser's; no IdP is needed to serve a session.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pinned } from './procs.mjs';

export const SESSION_COOKIE = 'obo_session';
export const REDIS_PREFIX = 'obo:bench:';

/** The session id of bench session `i` (32 base64url characters, as the server makes them). */
export function sessionSid(i) {
  return createHash('sha256').update(`bench-session-${i}`).digest('base64url').slice(0, 32);
}

/** A session record as the login stage writes it (fields of src/session/store.ts SessionRecord). */
export function sessionRecord({ sid, issuer, sub, idToken, accessToken, nowMs, lifetimeMs = 8 * 3600_000 }) {
  return { sid, login: 'istio-system/bench-login', iss: issuer, sub, idToken, accessToken, accessExp: Math.floor((nowMs + lifetimeMs) / 1000), created: nowMs, expires: nowMs + lifetimeMs, seen: nowMs, ver: 1 };
}

export function loginYaml({ issuer, appUrl, redisPort }) {
  return `apiVersion: obo-authz.dev/v1alpha1
kind: OIDCLogin
metadata:
  name: bench-login
  namespace: istio-system
spec:
  issuer: ${issuer}
  clientId: bench
  clientSecretFile: client-secret
  appUrl: ${appUrl}
  session:
    keyFiles: [session.key]
${redisPort ? `    redis:\n      address: "127.0.0.1:${redisPort}"\n      passwordFile: redis-password\n      keyPrefix: "${REDIS_PREFIX}"\n` : ''}`;
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Start redis-server (no persistence) on the load core; resolves when it accepts connections. */
export async function startRedis(dir, core) {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const password = randomBytes(16).toString('hex');
  const [cmd, args] = pinned(core, 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--requirepass', password, '--maxmemory', '0']);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`redis-server did not start: ${out.slice(-300)}`)), 15_000);
    const on = (d) => {
      out += String(d);
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (c) => reject(new Error(`redis-server exited ${c}: ${out.slice(-300)}`)));
  });
  child.stdout.resume();
  child.stderr.resume();
  return { port, password, child };
}

/** Write sessions `from`..`to-1` into Redis (pipelined), sealed by the server's own code. */
export async function writeSessions({ Redis, keys, port, password, from, to, record }) {
  const client = new Redis({ host: '127.0.0.1', port, password, enableAutoPipelining: false });
  try {
    const batch = 5000;
    for (let i = from; i < to; i += batch) {
      const p = client.pipeline();
      for (let j = i; j < Math.min(to, i + batch); j++) {
        const rec = record(j);
        p.set(`${REDIS_PREFIX}s:${createHash('sha256').update(rec.sid).digest('base64url')}`, keys.seal(JSON.stringify(rec)), 'PX', 8 * 3600_000);
      }
      await p.exec();
    }
    const info = await client.info('memory');
    return { usedMemoryMiB: Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN) / 2 ** 20 };
  } finally {
    client.disconnect();
  }
}

export { join };
