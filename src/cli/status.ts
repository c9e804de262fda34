/** `obo-authz status --server HOST:PORT`: GET /status of a running server, as a table or JSON. */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseDuration } from '../config/schema.js';
import type { StatusDocument, StatusEntry } from '../http/status.js';
import { runWithSpec, stringFlag, UsageError, type Parsed } from './args.js';
import { clientTls, explainConnectError, type ClientTls } from './connect.js';
import type { Io } from './io.js';
import { STATUS } from './specs.js';

/** GET /status over HTTP or HTTPS (with the --tls-* settings). */
export function fetchStatus(server: string, tls: ClientTls | undefined, timeoutMs: number): Promise<{ status: number; body: string }> {
  const i = server.lastIndexOf(':');
  const host = server.slice(0, i).replace(/^\[|\]$/g, '');
  const opts = { host, port: Number(server.slice(i + 1)), path: '/status', method: 'GET', timeout: timeoutMs, headers: { accept: 'application/json' } };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req = tls
      ? httpsRequest({ ...opts, ca: tls.ca, ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}), ...(tls.serverName ? { servername: tls.serverName } : {}) }, onResponse)
      : httpRequest(opts, onResponse);
    req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs}ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code && !e.message.includes(e.code) ? `${e.code}: ${e.message}` : e.message)));
    req.end();
  });
}

const when = (v: unknown) => (typeof v === 'string' ? v.replace(/\.\d{3}Z$/, 'Z') : 'never');

function describe(e: StatusEntry, kind: 'issuer' | 'sts' | 'file'): string {
  const mark = e.ok ? 'ok  ' : 'FAIL';
  if (kind === 'issuer') {
    const kids = Array.isArray(e['kids']) && e['kids'].length ? ` (${(e['kids'] as string[]).join(', ')})` : '';
    const err = e['lastError'] ? `; last error ${when(e['lastAttemptAt'])}: ${e['lastError']} (${e['failures']} failure(s) in a row)` : '';
    return `  ${mark} ${e.name}  ${e['keys']} key(s)${kids}, fetched ${when(e['lastFetchAt'])} from ${e['source']}${err}`;
  }
  if (kind === 'sts') {
    const where = e['type'] === 'remote' ? String(e['tokenEndpoint']) : `issuer ${e['issuer']}`;
    const last = e['lastOutcome'] ? `last exchange ${when(e['lastAt'])}: ${e['lastOutcome']}${e['lastError'] ? ` (${e['lastError']})` : ''}` : 'no exchange yet';
    return `  ${mark} ${e.name}  ${e['type']} (${where}), ${last}`;
  }
  const err = e['lastError'] ? `; last error: ${e['lastError']}` : '';
  return `  ${mark} ${e.name}  ${e['kind']}, loaded ${when(e['loadedAt'])}, checked ${when(e['lastCheckAt'])}${err}`;
}

/** The human form of a status document. */
export function statusText(server: string, s: StatusDocument): string {
  const state = s.draining ? 'DRAINING' : s.serving ? 'SERVING' : 'NOT SERVING';
  const lines = [`obo-authz at ${server}: ${state}${s.serving ? (s.healthy ? ', every dependency answered its last call' : ', a dependency is failing') : ''}`];
  const c = s.config;
  lines.push(c.hash ? `config ${c.hash}, loaded ${when(c.loadedAt)} from ${c.files.length} file(s)` : 'config: none loaded');
  if (c.lastError) lines.push(`  last load attempt ${when(c.lastAttemptAt)} was rejected: ${c.lastError}`);
  const section = (title: string, list: StatusEntry[], kind: 'issuer' | 'sts' | 'file') => {
    lines.push(`${title}:${list.length === 0 ? ' none' : ''}`, ...list.map((e) => describe(e, kind)));
  };
  section('issuers (remote JWKS)', s.issuers, 'issuer');
  section('token services', s.sts, 'sts');
  section('credential files', s.files, 'file');
  return lines.join('\n');
}

async function status(p: Parsed, io: Io): Promise<number> {
  const v = p.values;
  const server = stringFlag(v, 'server')!;
  if (!/^.+:\d+$/.test(server)) throw new UsageError(`--server ${JSON.stringify(server)}: expected HOST:PORT (the server's --http-address)`);
  const timeoutMs = parseDuration(stringFlag(v, 'timeout')!);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError('--timeout: expected a duration such as 5s');
  const tls = clientTls(v);
  let answer;
  try {
    answer = await fetchStatus(server, tls, timeoutMs);
  } catch (e) {
    io.err(`obo-authz status: ${explainConnectError(server, e instanceof Error ? e.message : String(e), !!tls)}`);
    return 2;
  }
  let doc: StatusDocument;
  try {
    if (answer.status !== 200) throw new Error(`HTTP ${answer.status}`);
    doc = JSON.parse(answer.body) as StatusDocument;
    if (typeof doc.serving !== 'boolean') throw new Error('not a status document');
  } catch (e) {
    io.err(`obo-authz status: ${server} did not answer GET /status with a status document (${e instanceof Error ? e.message : String(e)}): is this the server's --http-address?`);
    return 2;
  }
  io.out(v['json'] === true ? JSON.stringify(doc, null, 2) : statusText(server, doc));
  return doc.serving && doc.healthy ? 0 : 1;
}

export function statusCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(STATUS, argv, io, status);
}
