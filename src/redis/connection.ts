/**
 * One Redis connection setting, written the same way wherever Redis is used (the OIDCLogin
 * session store, the shared exchange cache), and the shared ioredis client for it. Clients
 * live in runtime.shared under a digest of their settings (password included as a hash), so
 * a reload with the same settings keeps the connection, and two features naming the same
 * server share one.
 *
 * Failure is explicit: commands are not queued while disconnected (`enableOfflineQueue:
 * false`) and every command is bounded (`commandTimeout`), so an unreachable Redis answers
 * a Check with an error at once instead of holding it until Envoy's timeout. ioredis keeps
 * reconnecting in the background (exponential backoff, capped).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Runtime } from '../core/runtime.js';
import type { Path } from '../config/issues.js';
import type { KindDocument } from '../config/kinds.js';
import type { CompileContext } from '../config/kinds.js';
import { missingOutsideCluster } from '../config/outside-cluster.js';
import { bool, duration, num, obj, str, type Schema } from '../config/schema.js';

export interface RawRedisConnection {
  address?: string;
  db?: number;
  username?: string;
  passwordFile?: string;
  keyPrefix?: string;
  timeout?: number;
  connectTimeout?: number;
  tls?: { enabled?: boolean; caFile?: string; certFile?: string; keyFile?: string; serverName?: string };
}

/** The fields of a connection (a feature may add its own next to them). */
export const redisConnectionFields = {
    address: str({ nonEmpty: true, pattern: /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, patternHint: 'expected host:port' }),
    db: num({ int: true, min: 0, max: 15 }),
    username: str({ nonEmpty: true }),
    passwordFile: str({ nonEmpty: true }),
    keyPrefix: str({ nonEmpty: true, pattern: /^[\x21-\x7e]+$/, patternHint: 'printable ASCII without spaces' }),
    timeout: duration({ minMs: 1, maxMs: 60_000 }),
    connectTimeout: duration({ minMs: 1, maxMs: 60_000 }),
    tls: obj({ enabled: bool(), caFile: str({ nonEmpty: true }), certFile: str({ nonEmpty: true }), keyFile: str({ nonEmpty: true }), serverName: str({ nonEmpty: true }) }),
};

export const redisConnectionSchema: Schema<RawRedisConnection> = obj<RawRedisConnection>(redisConnectionFields, { required: ['address'] });

export interface RedisConnectionSettings {
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly username?: string;
  /** Read from passwordFile at compile time; never logged. */
  readonly password?: string;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string; readonly serverName?: string };
  /** Digest of everything above (shared-resource key; no secret in clear). */
  readonly id: string;
}

function readText(k: KindDocument, cc: CompileContext, path: Path, file: string, what: string): string | undefined {
  // validate --ci: a Secret mounted only in the pod is a warning; compile on with a stand-in.
  if (missingOutsideCluster(cc, k.v, path, file, cc.resolvePath(k.doc, file))) return 'stand-in';
  try {
    return readFileSync(cc.resolvePath(k.doc, file), 'utf8');
  } catch (e) {
    k.v.error(path, `cannot read ${what} file ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    return undefined;
  }
}

/** Validate and resolve a connection written at `path` of document `k` (files read here). */
export function compileRedisConnection(k: KindDocument, cc: CompileContext, path: Path, raw: RawRedisConnection, defaultPrefix: string): RedisConnectionSettings | undefined {
  const addr = raw.address!;
  const colon = addr.lastIndexOf(':');
  const host = addr.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(colon + 1));
  if (!(port > 0 && port < 65536)) {
    k.v.error([...path, 'address'], `invalid port in ${JSON.stringify(addr)}`);
    return undefined;
  }
  let password: string | undefined;
  if (raw.passwordFile) {
    const t = readText(k, cc, [...path, 'passwordFile'], raw.passwordFile, 'password');
    if (t === undefined) return undefined;
    password = t.replace(/\r?\n$/, '');
    if (password === '') {
      k.v.error([...path, 'passwordFile'], 'the password file is empty');
      return undefined;
    }
    cc.runtime.secrets?.register(`redis:${k.ref}:${path.join('.')}`, [password]);
  }
  let tls: RedisConnectionSettings['tls'];
  const t = raw.tls;
  if (t && t.enabled !== false) {
    const ca = t.caFile ? readText(k, cc, [...path, 'tls', 'caFile'], t.caFile, 'CA') : undefined;
    const cert = t.certFile ? readText(k, cc, [...path, 'tls', 'certFile'], t.certFile, 'certificate') : undefined;
    const key = t.keyFile ? readText(k, cc, [...path, 'tls', 'keyFile'], t.keyFile, 'key') : undefined;
    if ((t.caFile && ca === undefined) || (t.certFile && cert === undefined) || (t.keyFile && key === undefined)) return undefined;
    if (!!t.certFile !== !!t.keyFile) {
      k.v.error([...path, 'tls', t.certFile ? 'keyFile' : 'certFile'], 'certFile and keyFile go together (client certificate)');
      return undefined;
    }
    tls = Object.freeze({ ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(t.serverName ? { serverName: t.serverName } : {}) });
  }
  const base = {
    host,
    port,
    db: raw.db ?? 0,
    ...(raw.username ? { username: raw.username } : {}),
    ...(password !== undefined ? { password } : {}),
    keyPrefix: raw.keyPrefix ?? defaultPrefix,
    commandTimeoutMs: raw.timeout ?? 500,
    connectTimeoutMs: raw.connectTimeout ?? 2_000,
    ...(tls ? { tls } : {}),
  };
  const id = createHash('sha256').update(JSON.stringify({ ...base, keyPrefix: undefined })).digest('base64url').slice(0, 22);
  return Object.freeze({ ...base, id });
}

/** The handle features use: the client, and whether it is connected right now. */
export interface RedisHandle {
  readonly client: Redis;
  readonly settings: RedisConnectionSettings;
  ready(): boolean;
  dispose(): void;
}

/** The shared client for these settings (one connection per server and credentials). */
export function sharedRedis(runtime: Runtime, s: RedisConnectionSettings): RedisHandle {
  return runtime.shared.get(`redis:${s.id}`, () => {
    const opts: RedisOptions = {
      host: s.host,
      port: s.port,
      db: s.db,
      ...(s.username ? { username: s.username } : {}),
      ...(s.password !== undefined ? { password: s.password } : {}),
      commandTimeout: s.commandTimeoutMs,
      connectTimeout: s.connectTimeoutMs,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Reconnect in the background; a Check never waits for it.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
      lazyConnect: false,
      ...(s.tls ? { tls: { ...(s.tls.ca ? { ca: s.tls.ca } : {}), ...(s.tls.cert ? { cert: s.tls.cert, key: s.tls.key } : {}), ...(s.tls.serverName ? { servername: s.tls.serverName } : {}) } } : {}),
    };
    const client = new Redis(opts);
    let lastLogged = 0;
    client.on('error', (e: Error & { code?: string }) => {
      // Connection errors repeat while Redis is down: log at most every 10 s, without the password.
      const now = Date.now();
      if (now - lastLogged < 10_000) return;
      lastLogged = now;
      runtime.logger.warn({ redis: `${s.host}:${s.port}`, code: e.code ?? e.name }, 'redis connection error');
    });
    let disposed = false;
    return {
      client,
      settings: s,
      ready: () => client.status === 'ready',
      dispose() {
        if (disposed) return;
        disposed = true;
        client.disconnect(false);
      },
    };
  });
}
