/**
 * `obo-authz serve`: wires config loading, watching, the gRPC and HTTP listeners, and
 * graceful shutdown. startServer() is also what integration tests use (port 0).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadConfig, type CompiledConfig } from '../pipeline/compile.js';
import { formatIssue } from '../config/issues.js';
import { watchConfig, type Watcher } from '../config/watch.js';
import { createGrpcServer, ServingState } from '../grpc/server.js';
import { handleMcpHttp } from '../http/mcp.js';
import { createAdminServer, type RouteHandler } from '../http/admin.js';
import { handleStsHttp } from '../http/sts.js';
import { LineWriter } from '../observability/decision-log.js';
import { createLogger } from '../observability/logger.js';
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
  readonly runtime?: Runtime;
  readonly tls?: TlsFiles;
  /** Watch config files for changes (default true). */
  readonly watch?: boolean;
  readonly watchDebounceMs?: number;
  readonly watchPollMs?: number;
  /** Write decision lines to this file (JSON lines) instead of the main log. */
  readonly decisionLogPath?: string;
}

export interface RunningServer {
  readonly grpcAddress: string;
  readonly httpAddress: string;
  readonly state: ServingState;
  readonly runtime: Runtime;
  /** Load the config paths again now; resolves true when the new config is in force. */
  reload(): boolean;
  /** SIGTERM behaviour: NOT_SERVING, keep answering for the grace period, drain, close. */
  shutdown(graceMs?: number): Promise<void>;
  /** Immediate close (tests). */
  close(): Promise<void>;
}

export function createRuntime(level?: string): Runtime {
  const metrics = new Metrics({ collectDefault: true });
  return {
    now: () => Date.now(),
    fetch: (input, init) => fetch(input, init),
    logger: createLogger({ level }),
    // Decision lines: batched asynchronous writes to stdout (flushed on shutdown). One line
    // per Check must stay cheap (see observability/decision-log.ts).
    decisionSink: decisionWriter(1, metrics),
    metrics,
    shared: new SharedResources(),
  };
}

function decisionWriter(target: number | string, metrics: Metrics): LineWriter {
  const dropped = metrics.counter('decision_log_dropped_total', 'Decision log lines dropped because the output could not keep up or failed.', []);
  // flushOnExit: an exit that skips the graceful shutdown (a crash) still writes what is buffered.
  return new LineWriter(target, { onDrop: () => dropped.inc(), flushOnExit: true });
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

  const applyConfig = (initial: boolean): boolean => {
    try {
      const r = loadConfig(opts.configPaths, runtime);
      for (const i of r.issues) if (i.severity === 'warning') log.warn({ issue: formatIssue(i) }, 'config warning');
      if (!r.ok) {
        runtime.metrics.configReloads.inc({ result: 'failure' });
        log.error(
          { errors: r.issues.filter((i) => i.severity === 'error').map(formatIssue), keeping: state.config?.hash ?? null },
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
      log.info({ hash: r.config.hash, files: r.config.files, counts: r.config.counts }, initial ? 'config loaded' : 'config reloaded');
      return true;
    } catch (e) {
      // loadConfig never throws; this guards the logging/metrics around it. Keep serving.
      runtime.metrics.configReloads.inc({ result: 'failure' });
      log.error({ err: e instanceof Error ? e.name : 'unknown' }, 'config load failed unexpectedly: keeping the last good config');
      return false;
    }
  };
  applyConfig(true);

  const tls = opts.tls
    ? {
        cert: readFileSync(opts.tls.cert),
        key: readFileSync(opts.tls.key),
        ca: opts.tls.clientCa ? readFileSync(opts.tls.clientCa) : undefined,
      }
    : undefined;

  // gRPC listener
  const decisionSink = opts.decisionLogPath ? decisionWriter(opts.decisionLogPath, runtime.metrics) : undefined;
  const grpcServer = createGrpcServer(state, runtime, { decisionSink });
  const g = splitHostPort(opts.grpcAddress ?? '0.0.0.0:9001');
  const creds = tls
    ? grpc.ServerCredentials.createSsl(tls.ca ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], !!tls.ca)
    : grpc.ServerCredentials.createInsecure();
  const grpcHostPort = g.host.includes(':') ? `[${g.host}]:${g.port}` : `${g.host}:${g.port}`;
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(grpcHostPort, creds, (err, port) => (err ? reject(err) : resolve(port))),
  );

  // HTTP listener
  const routes: RouteHandler[] = [(req, res) => handleStsHttp(req, res, state.config, runtime), (req, res) => handleMcpHttp(req, res, state.config)];
  const http = createAdminServer({ state, runtime, routes, tls });
  const h = splitHostPort(opts.httpAddress ?? '0.0.0.0:9002');
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(h.port, h.host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const httpPort = (http.address() as AddressInfo).port;
  const fmt = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
  const grpcAddress = fmt(g.host, grpcPort);
  const httpAddress = fmt(h.host, httpPort);

  let watcher: Watcher | undefined;
  if (opts.watch !== false) {
    watcher = watchConfig(opts.configPaths, () => applyConfig(false), { debounceMs: opts.watchDebounceMs, pollMs: opts.watchPollMs });
  }
  log.info({ grpcAddress, httpAddress, tls: !!tls, serving: state.serving }, 'obo-authz listening');

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    watcher?.close();
    await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
    await new Promise<void>((resolve) => http.close(() => resolve()));
    http.closeAllConnections?.();
    runtime.shared.disposeAll();
    // Buffered decision lines must reach their file/stdout before the process exits.
    await Promise.all([decisionSink?.close(), runtime.decisionSink?.flush?.()]);
  };

  return {
    grpcAddress,
    httpAddress,
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
