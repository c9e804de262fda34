/** `obo-authz serve`: flags -> startServer(), signals -> graceful shutdown, clear start-up errors. */
import { existsSync, statSync } from 'node:fs';
import { listFlag, runWithSpec, stringFlag, UsageError, type Parsed } from './args.js';
import type { Io } from './io.js';
import { createRuntime, ListenError, startServer } from './serve.js';
import { SERVE } from './specs.js';

const LISTENER_FLAG: Record<ListenError['listener'], string> = { grpc: '--grpc-address', http: '--http-address', health: '--health-address', 'http-authz': '--http-authz-address' };

function checkAddress(flag: string, v: string | undefined): void {
  if (v === undefined) return;
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i <= 0 || !/^\d+$/.test(v.slice(i + 1)) || port > 65535) throw new UsageError(`${flag} ${JSON.stringify(v)}: expected HOST:PORT (port 0-65535; 0 picks a free port)`);
}

async function serve(p: Parsed, io: Io): Promise<number> {
  const v = p.values;
  let configPaths = listFlag(v, 'config');
  if (configPaths.length === 0) {
    if (existsSync('config') && statSync('config').isDirectory()) configPaths = ['config'];
    else throw new UsageError('needs --config PATH (no ./config folder here; there is no built-in config)');
  }
  const cert = stringFlag(v, 'tls-cert');
  const key = stringFlag(v, 'tls-key');
  const clientCa = stringFlag(v, 'tls-client-ca');
  if (!!cert !== !!key) throw new UsageError('--tls-cert and --tls-key go together');
  if (clientCa && !cert) throw new UsageError('--tls-client-ca needs --tls-cert and --tls-key');
  for (const f of ['grpc-address', 'http-address', 'health-address', 'http-authz-address']) checkAddress(`--${f}`, stringFlag(v, f));
  const level = stringFlag(v, 'log-level')!;
  if (!['debug', 'info', 'warn', 'error', 'silent', 'trace', 'fatal'].includes(level)) throw new UsageError(`--log-level ${JSON.stringify(level)}: expected debug, info, warn, error or silent`);

  const runtime = createRuntime(level);
  let server;
  try {
    server = await startServer({
      configPaths,
      grpcAddress: stringFlag(v, 'grpc-address'),
      httpAddress: stringFlag(v, 'http-address'),
      healthAddress: stringFlag(v, 'health-address'),
      httpAuthzAddress: stringFlag(v, 'http-authz-address'),
      runtime,
      decisionLogPath: stringFlag(v, 'decision-log'),
      tls: cert ? { cert, key: key!, ...(clientCa ? { clientCa } : {}) } : undefined,
    });
  } catch (e) {
    if (e instanceof ListenError) {
      const flag = LISTENER_FLAG[e.listener];
      io.err(`obo-authz serve: ${flag} ${e.address}: ${e.reason}; choose another address with ${flag} HOST:PORT (port 0 picks a free one)`);
      runtime.logger.error({ flag, address: e.address, code: e.code }, 'cannot listen: exiting');
    } else {
      io.err(`obo-authz serve: ${e instanceof Error ? e.message : String(e)}`);
    }
    return 2;
  }
  if (!server.state.config) {
    runtime.logger.error('no valid configuration at start-up: health reports NOT_SERVING and checks are denied with 503 until a valid config is written');
  }
  const running = server;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      runtime.logger.info({ signal }, 'signal received');
      running.shutdown().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

export function serveCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(SERVE, argv, io, serve);
}
