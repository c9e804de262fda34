/**
 * `obo-authz serve`: wires config loading, watching, the gRPC and HTTP listeners, and
 * graceful shutdown. startServer() is also what integration tests use (port 0).
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { CompiledConfig } from '../pipeline/compile.js';
import { loadConfigAsync } from '../pipeline/load.js';
import { formatIssue } from '../config/issues.js';
import { configSignature, watchConfig, type Watcher } from '../config/watch.js';
import { createGrpcServer, ServingState } from '../grpc/server.js';
import { handleMcpHttp } from '../http/mcp.js';
import { createAdminServer, createHealthServer, type RouteHandler } from '../http/admin.js';
import { handleStatusHttp, type ConfigStatus } from '../http/status.js';
import { createHttpAuthzServer } from '../http/authz-server.js';
import { DEFAULT_HTTP_LIMITS, TokenRateLimiter, type HttpLimits } from '../http/limits.js';
import { handleStsHttp } from '../http/sts.js';
import { sharedLineWriter, type LineWriter } from '../observability/line-writer.js';
import { createLogger, lineDestination } from '../observability/logger.js';
import { SecretRedactor } from '../observability/redact.js';
import { Metrics } from '../observability/metrics.js';
import { SharedResources } from '../core/runtime.js';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string;
}

export interface ServerOptions {
  readonly configPaths: readonly string[];
  readonly grpcAddress?: string;
  readonly httpAddress?: string;
  /** Plain-HTTP /healthz and /readyz only (container health checks with TLS on); off when unset. */
  readonly healthAddress?: string;
  /** HTTP authorization listener (Envoy http_service, nginx, Traefik); default Settings.httpAuthz.address, else off. */
  readonly httpAuthzAddress?: string;
  readonly runtime?: Runtime;
  readonly tls?: TlsFiles;
  /** Watch config files for changes (default true). */
  readonly watch?: boolean;
  readonly watchDebounceMs?: number;
  readonly watchPollMs?: number;
  /** How long changed files must stay unchanged before they are loaded (default: the poll interval). */
  readonly watchSettleMs?: number;
  /** Write decision lines to this file (JSON lines) instead of the main log. */
  readonly decisionLogPath?: string;
  /** HTTP listener timeouts, connection caps and token-endpoint rate limits (http/limits.ts). */
  readonly httpLimits?: Partial<HttpLimits>;
}

export interface RunningServer {
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly healthAddress?: string;
  /** '' when the HTTP authorization listener is off. */
  readonly httpAuthzAddress: string;
  readonly state: ServingState;
  readonly runtime: Runtime;
  /** Load the config paths again now; resolves true when the new config is in force. */
  reload(): Promise<boolean>;
  /** SIGTERM behaviour: NOT_SERVING, keep answering for the grace period, drain, close. */
  shutdown(graceMs?: number): Promise<void>;
  /** Immediate close (tests). */
  close(): Promise<void>;
}

/** Read the TLS files, naming the flag of one that cannot be read. */
function readTlsFiles(t: TlsFiles): { cert: Buffer; key: Buffer; ca?: Buffer } {
  const read = (file: string, flag: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${flag} ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  };
  return { cert: read(t.cert, '--tls-cert'), key: read(t.key, '--tls-key'), ...(t.clientCa ? { ca: read(t.clientCa, '--tls-client-ca') } : {}) };
}

export function createRuntime(level?: string): Runtime {
  const metrics = new Metrics({ collectDefault: true });
  const secrets = new SecretRedactor();
  // One ordered writer for stdout: decision lines (batched asynchronous writes, flushed on
  // shutdown; one line per Check must stay cheap) and the main log go through it, so every
  // line reaches the pipe whole (observability/line-writer.ts).
  const stdout = lineWriter(1, metrics);
  return {
    now: () => Date.now(),
    fetch: (input, init) => fetch(input, init),
    logger: createLogger({ level, destination: lineDestination(stdout), redactor: secrets }),
    decisionSink: stdout,
    metrics,
    shared: new SharedResources(),
    secrets,
  };
}

function lineWriter(target: number | string, metrics: Metrics): LineWriter {
  const dropped = metrics.counter('decision_log_dropped_total', 'Log lines (decision lines, and main-log lines sharing their output) dropped because the output could not keep up or failed.', []);
  // flushOnExit: an exit that skips the graceful shutdown (a crash) still writes what is buffered.
  return sharedLineWriter(target, { onDrop: () => dropped.inc(), flushOnExit: true });
}

/** A listener that could not be bound: which one, where, and the system's reason. */
export class ListenError extends Error {
  constructor(
    readonly listener: 'grpc' | 'http' | 'health' | 'http-authz',
    readonly address: string,
    readonly code: string,
    readonly reason: string,
  ) {
    super(`cannot listen on ${address}: ${reason}`);
    this.name = 'ListenError';
  }
}

/** The errno code in a bind error (grpc-js folds it into its message). */
function bindCode(e: unknown): string {
  const c = (e as NodeJS.ErrnoException)?.code;
  if (typeof c === 'string') return c;
  return /\b(EADDRINUSE|EACCES|EADDRNOTAVAIL|ENOTFOUND|EAI_AGAIN|EINVAL)\b/.exec(String((e as Error)?.message ?? e))?.[1] ?? 'EUNKNOWN';
}

const BIND_REASONS: Record<string, string> = {
  EADDRINUSE: 'address already in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no such local address on this host',
  ENOTFOUND: 'unknown host name',
  EAI_AGAIN: 'host name lookup failed',
};

function listenError(listener: ListenError['listener'], address: string, e: unknown): ListenError {
  const code = bindCode(e);
  return new ListenError(listener, address, code, BIND_REASONS[code] ?? String((e as Error)?.message ?? e).split('\n')[0]!);
}

function listenHttp(server: HttpServer, listener: ListenError['listener'], address: string): Promise<string> {
  const h = splitHostPort(address);
  return new Promise<string>((resolve, reject) => {
    const onError = (e: unknown) => reject(listenError(listener, address, e));
    server.once('error', onError);
    server.listen(h.port, h.host, () => {
      server.off('error', onError);
      resolve(fmtAddress(h.host, (server.address() as AddressInfo).port));
    });
  });
}

function fmtAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  if (i < 0) throw new Error(`invalid address ${JSON.stringify(addr)}: expected HOST:PORT`);
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port in ${JSON.stringify(addr)}`);
  return { host, port };
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const runtime = opts.runtime ?? createRuntime();
  const log = runtime.logger;
  const state = new ServingState();
  const tls = opts.tls ? readTlsFiles(opts.tls) : undefined;
  const configStatus: ConfigStatus = { hash: null, loadedAt: null, files: [], lastAttemptAt: null, lastError: null };

  if (opts.configPaths.length === 0) log.error('no --config path given: not serving');
  for (const p of opts.configPaths) {
    // Loud, at start-up: a typo in a mount path otherwise shows only as NOT_SERVING.
    if (!existsSync(p)) log.error({ path: p, flag: '--config' }, `config path ${JSON.stringify(p)} does not exist: not serving until it appears with a valid config`);
  }
  /** Files as they were when last read whole (valid or not); '' when the last read was abandoned. */
  let attempted = '';
  /**
   * Load, validate (in a worker) and compile (in slices) the config; swap it in when valid.
   * `settled`: what the files looked like when the watcher saw them settle; if they changed
   * while they were read, what was read may be a mixture, so it is not swapped in (the watcher
   * sees the change and loads again once the files settle).
   */
  const loadOnce = async (initial: boolean, settled?: string): Promise<boolean> => {
    try {
      const before = settled ?? configSignature(opts.configPaths);
      const r = await loadConfigAsync(opts.configPaths, runtime);
      attempted = configSignature(opts.configPaths) === before ? before : '';
      if (attempted === '') {
        if (r.ok) runtime.shared.abortGeneration();
        log.warn({ keeping: state.config?.hash ?? null }, 'config files changed while they were loaded: waiting for them to settle');
        return false;
      }
      for (const i of r.issues) if (i.severity === 'warning') log.warn({ issue: formatIssue(i) }, 'config warning');
      if (!r.ok) {
        runtime.metrics.configReloads.inc({ result: 'failure' });
        const errors = r.issues.filter((i) => i.severity === 'error').map(formatIssue);
        configStatus.lastAttemptAt = runtime.now();
        configStatus.lastError = `${errors.length} error${errors.length === 1 ? '' : 's'}: ${errors[0] ?? ''}`;
        log.error(
          { errors: errors.slice(0, 50), errorCount: errors.length, keeping: state.config?.hash ?? null },
          initial ? 'invalid config: not serving' : 'invalid config rejected: keeping the last good config',
        );
        return false;
      }
      const generation = runtime.shared.currentGeneration;
      const prev: CompiledConfig | null = state.config;
      state.config = r.config;
      // Checks that started under the previous config may still use its resources (JWKS
      // sources, watched key files): release them only after those Checks are bounded to end.
      const releaseAfter = Math.max(1000, prev?.settings.defaultTimeoutMs ?? 0);
      setTimeout(() => runtime.shared.sweepBefore(generation), releaseAfter).unref();
      runtime.metrics.configReloads.inc({ result: 'success' });
      if (prev) runtime.metrics.configInfo.remove({ hash: prev.hash });
      runtime.metrics.configInfo.set({ hash: r.config.hash }, 1);
      configStatus.hash = r.config.hash;
      configStatus.files = [...r.config.files];
      configStatus.loadedAt = configStatus.lastAttemptAt = runtime.now();
      configStatus.lastError = null;
      log.info({ hash: r.config.hash, files: r.config.files, counts: r.config.counts, validatedIn: r.via }, initial ? 'config loaded' : 'config reloaded');
      return true;
    } catch (e) {
      // loadConfigAsync never throws; this guards the logging/metrics around it. Keep serving.
      runtime.metrics.configReloads.inc({ result: 'failure' });
      log.error({ err: e instanceof Error ? e.name : 'unknown' }, 'config load failed unexpectedly: keeping the last good config');
      return false;
    }
  };
  // One load at a time (a compile in slices must not interleave with another).
  let loading: Promise<boolean> = Promise.resolve(true);
  const applyConfig = (initial: boolean, settled?: string): Promise<boolean> => {
    const next = loading.then(() => loadOnce(initial, settled));
    loading = next.catch(() => false);
    return next;
  };
  await applyConfig(true);

  // gRPC listener
  const decisionSink = opts.decisionLogPath ? lineWriter(opts.decisionLogPath, runtime.metrics) : undefined;
  const grpcServer = createGrpcServer(state, runtime, { decisionSink });
  const grpcAddr = opts.grpcAddress ?? '0.0.0.0:9001';
  const g = splitHostPort(grpcAddr);
  const creds = tls
    ? grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], !!tls.ca)
    : grpc.ServerCredentials.createInsecure();
  // The admin port's timeouts and connection caps, and the token endpoint's rate limits.
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...opts.httpLimits };
  const limiter = new TokenRateLimiter(limits);
  const routes: RouteHandler[] = [
    (req, res) => handleStatusHttp(req, res, state, configStatus, runtime),
    (req, res) => handleStsHttp(req, res, state.config, runtime, { limiter, bodyTimeoutMs: limits.bodyTimeoutMs }),
    (req, res) => handleMcpHttp(req, res, state.config),
  ];
  const http = createAdminServer({ state, runtime, routes, tls, limits });
  const health = opts.healthAddress ? createHealthServer(state, runtime) : undefined;
  // HTTP authorization listener: off unless an address is given (flag or Settings.httpAuthz).
  const authzAt = opts.httpAuthzAddress || state.config?.settings.httpAuthz?.address || '';
  const authz = authzAt ? createHttpAuthzServer(state, runtime, { tls, decisionSink, maxHeaderBytes: state.config?.settings.httpAuthz?.maxHeaderBytes }) : undefined;
  let httpAuthzAddress = '';
  let grpcAddress: string;
  let httpAddress: string;
  let healthAddress: string | undefined;
  try {
    const grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync(fmtAddress(g.host, g.port), creds, (err, port) => (err ? reject(listenError('grpc', grpcAddr, err)) : resolve(port))),
    );
    grpcAddress = fmtAddress(g.host, grpcPort);
    httpAddress = await listenHttp(http, 'http', opts.httpAddress ?? '0.0.0.0:9002');
    if (health) healthAddress = await listenHttp(health, 'health', opts.healthAddress!);
    if (authz) {
      const a = splitHostPort(authzAt);
      const port = await authz.listen(a.port, a.host).catch((e: unknown) => {
        throw listenError('http-authz', authzAt, e);
      });
      httpAuthzAddress = fmtAddress(a.host, port);
    }
  } catch (e) {
    // Nothing may stay behind a failed start: listeners, JWKS refresh timers, file watchers.
    grpcServer.forceShutdown();
    if (http.listening) http.close();
    if (health?.listening) health.close();
    await authz?.close();
    runtime.shared.disposeAll();
    await decisionSink?.close();
    throw e;
  }

  let watcher: Watcher | undefined;
  if (opts.watch !== false) {
    watcher = watchConfig(opts.configPaths, (sig) => applyConfig(false, sig), {
      debounceMs: opts.watchDebounceMs,
      pollMs: opts.watchPollMs,
      settleMs: opts.watchSettleMs,
      // Files that changed while the first load read them are loaded again once they settle.
      initialSignature: attempted,
    });
  }
  log.info({ grpcAddress, httpAddress, ...(healthAddress ? { healthAddress } : {}), ...(httpAuthzAddress ? { httpAuthzAddress } : {}), tls: !!tls, serving: state.serving }, 'obo-authz listening');

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    watcher?.close();
    await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
    await new Promise<void>((resolve) => http.close(() => resolve()));
    http.closeAllConnections?.();
    if (health) {
      await new Promise<void>((resolve) => health.close(() => resolve()));
      health.closeAllConnections?.();
    }
    await authz?.close();
    runtime.shared.disposeAll();
    // Buffered decision lines must reach their file/stdout before the process exits.
    await Promise.all([decisionSink?.close(), runtime.decisionSink?.flush?.()]);
  };

  return {
    grpcAddress,
    httpAddress,
    ...(healthAddress ? { healthAddress } : {}),
    httpAuthzAddress,
    state,
    runtime,
    reload: () => applyConfig(false),
    async shutdown(graceMs?: number) {
      const grace = graceMs ?? state.config?.settings.shutdownGracePeriodMs ?? 5000;
      state.startDraining();
      log.info({ graceMs: grace }, 'shutting down: health NOT_SERVING, still answering checks during the grace period');
      await new Promise((r) => setTimeout(r, grace));
      await state.idle();
      await close();
      log.info('shutdown complete');
    },
    close,
  };
}
