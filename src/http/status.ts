/**
 * GET /status on the HTTP port: is the server serving, which config is in force (content
 * hash, the same `validate` prints, and when it was loaded), and how each dependency is
 * doing: per issuer its JWKS keys, last fetch and last error; per STS the last exchange
 * outcome; per credential file its last reload. Every long-lived dependency in the runtime's
 * SharedResources that implements StatusReporter is listed. Identifiers and sanitized
 * messages only, like /metrics: no token, key or secret.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isStatusReporter, type StatusReport, type StatusValue } from '../core/status.js';
import type { ServingState } from '../grpc/server.js';
import type { Runtime } from '../core/runtime.js';

/** The config side of the status, kept up to date by the server's config loader. */
export interface ConfigStatus {
  hash: string | null;
  loadedAt: number | null;
  files: string[];
  /** The last load attempt (a rejected reload too) and its first error. */
  lastAttemptAt: number | null;
  lastError: string | null;
}

export interface StatusEntry {
  readonly name: string;
  readonly ok: boolean;
  readonly [detail: string]: StatusValue | undefined;
}

export interface StatusDocument {
  readonly serving: boolean;
  readonly draining: boolean;
  /** Serving, and every dependency's last operation succeeded. */
  readonly healthy: boolean;
  readonly time: string;
  readonly config: { hash: string | null; loadedAt: string | null; files: string[]; lastAttemptAt: string | null; lastError: string | null };
  readonly issuers: StatusEntry[];
  readonly sts: StatusEntry[];
  readonly files: StatusEntry[];
}

const iso = (ms: number | null): string | null => (ms === null || !Number.isFinite(ms) || ms <= 0 ? null : new Date(ms).toISOString());

/** Keys ending in `At` hold times: shown as RFC 3339. */
function entry(r: StatusReport): StatusEntry {
  const out: Record<string, StatusValue> = { name: r.name, ok: r.ok };
  for (const [k, v] of Object.entries(r.details)) out[k] = k.endsWith('At') && (typeof v === 'number' || v === null) ? iso(v) : v;
  return out as StatusEntry;
}

export function buildStatus(state: ServingState, config: ConfigStatus, runtime: Runtime): StatusDocument {
  const groups: Record<StatusReport['kind'], StatusEntry[]> = { jwks: [], sts: [], file: [] };
  for (const v of runtime.shared.values()) {
    if (!isStatusReporter(v)) continue;
    const r = v.statusReport();
    groups[r.kind].push(entry(r));
  }
  for (const g of Object.values(groups)) g.sort((a, b) => a.name.localeCompare(b.name));
  const all = [...groups.jwks, ...groups.sts, ...groups.file];
  return {
    serving: state.serving,
    draining: state.draining,
    healthy: state.serving && all.every((e) => e.ok),
    time: new Date(runtime.now()).toISOString(),
    config: { hash: config.hash, loadedAt: iso(config.loadedAt), files: config.files, lastAttemptAt: iso(config.lastAttemptAt), lastError: config.lastError },
    issuers: groups.jwks,
    sts: groups.sts,
    files: groups.file,
  };
}

/** GET /status (and HEAD); false for other paths so the next handler answers. */
export async function handleStatusHttp(req: IncomingMessage, res: ServerResponse, state: ServingState, config: ConfigStatus, runtime: Runtime): Promise<boolean> {
  if ((req.url ?? '/').split('?')[0] !== '/status') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('method not allowed\n');
    return true;
  }
  const body = JSON.stringify(buildStatus(state, config, runtime), null, 2);
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
