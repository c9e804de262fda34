/** `obo-authz health`: plain-HTTP GET /readyz, for container health checks (see serve --health-address). */
import { request } from 'node:http';
import { parseDuration } from '../config/schema.js';
import { runWithSpec, stringFlag, UsageError, type Parsed } from './args.js';
import { explainConnectError } from './connect.js';
import type { Io } from './io.js';
import { HEALTH } from './specs.js';

/** GET http://address/path; resolves with the status code, rejects on a connection error. */
export function httpGetStatus(address: string, path: string, timeoutMs: number): Promise<number> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = request({ host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)), path, method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs}ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function health(p: Parsed, io: Io): Promise<number> {
  const server = stringFlag(p.values, 'server')!;
  const timeoutMs = parseDuration(stringFlag(p.values, 'timeout')!);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError('--timeout: expected a duration such as 3s');
  if (!/^.+:\d+$/.test(server)) throw new UsageError(`--server ${JSON.stringify(server)}: expected HOST:PORT`);
  try {
    const status = await httpGetStatus(server, '/readyz', timeoutMs);
    if (status === 200) {
      io.out('ready');
      return 0;
    }
    io.err(`not ready (HTTP ${status} from http://${server}/readyz)`);
    return 1;
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    const plainOnly = /socket hang up|ECONNRESET/i.test(detail)
      ? `${server} does not answer plain HTTP (a TLS listener?): health probes plain HTTP only; give serve a plain health listener with --health-address HOST:PORT (${detail})`
      : explainConnectError(server, detail, false);
    io.err(`obo-authz health: ${plainOnly}`);
    return 2;
  }
}

export function healthCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(HEALTH, argv, io, health);
}
