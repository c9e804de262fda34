/**
 * One table against one compiled config: each case's request is built (tokens minted),
 * evaluated by the real pipeline and turned into the CheckResponse Envoy would get, and the
 * expectations are compared with that response: status, reason, deciding policy, deny
 * headers, the headers set and removed upstream, the claims of an exchanged token.
 */
import { dirname, isAbsolute, resolve } from 'node:path';
import { decodeJwt } from 'jose';
import type { RawCheckRequest } from '../../core/context.js';
import type { Decision } from '../../core/decision.js';
import type { Runtime } from '../../core/runtime.js';
import type { CompiledConfig } from '../../pipeline/compile.js';
import { evaluate } from '../../pipeline/pipeline.js';
import { decisionMetadata, toCheckResponse, type CheckResponseObject } from '../../respond/respond.js';
import { checkRequestValue, readCheckRequest } from '../check.js';
import type { TokenMinter } from './keys.js';
import type { CaseSpec, ExpectSpec, PeerSpec, RequestSpec, TokenSpec } from './table.js';

export interface Difference {
  readonly field: string;
  readonly expected: unknown;
  readonly actual: unknown;
}

export interface CaseResult {
  readonly name: string;
  readonly index: number;
  readonly status: 'pass' | 'fail' | 'skip' | 'error';
  readonly differences: Difference[];
  /** Why the case could not run (a bad request file, a token that cannot be minted). */
  readonly error?: string;
  readonly decision?: Decision;
}

/** Case request over the table defaults: maps merged, everything else replaced. */
export function mergeRequest(d: RequestSpec | undefined, c: RequestSpec | undefined): RequestSpec {
  const a = d ?? {};
  const b = c ?? {};
  const peer = (x?: PeerSpec, y?: PeerSpec) => (x || y ? { ...x, ...y, ...(x?.labels || y?.labels ? { labels: { ...x?.labels, ...y?.labels } } : {}) } : undefined);
  const out: Record<string, unknown> = { ...a, ...b };
  if (a.headers || b.headers) out['headers'] = { ...a.headers, ...b.headers };
  if (a.contextExtensions || b.contextExtensions) out['contextExtensions'] = { ...a.contextExtensions, ...b.contextExtensions };
  if (b.token || b.tokens) {
    delete out['token'];
    delete out['tokens'];
    if (b.token) out['token'] = b.token;
    if (b.tokens) out['tokens'] = b.tokens;
  }
  const src = peer(a.source, b.source);
  const dst = peer(a.destination, b.destination);
  if (src) out['source'] = src;
  if (dst) out['destination'] = dst;
  return out as RequestSpec;
}

function peerOf(p: PeerSpec | undefined): NonNullable<NonNullable<RawCheckRequest['attributes']>['source']> | undefined {
  if (!p) return undefined;
  return {
    ...(p.address !== undefined ? { address: { socket_address: { address: p.address, port_value: p.port ?? 0 } } } : {}),
    ...(p.principal !== undefined ? { principal: p.principal } : {}),
    ...(p.labels ? { labels: p.labels } : {}),
  };
}

/** The CheckRequest of a case, as Envoy would send it (header names lower-cased). */
export async function buildRequest(r: RequestSpec, minter: TokenMinter, tableFile: string, field: string): Promise<RawCheckRequest> {
  let base: RawCheckRequest = {};
  if (typeof r.checkRequest === 'string') base = readCheckRequest(isAbsolute(r.checkRequest) ? r.checkRequest : resolve(dirname(tableFile), r.checkRequest));
  else if (r.checkRequest) base = checkRequestValue(r.checkRequest, `${tableFile}: ${field}.checkRequest`);
  const attrs = { ...(base.attributes ?? {}) };
  const http = { ...(attrs.request?.http ?? {}) };
  const headers: Record<string, string> = { ...(http.headers ?? {}) };
  const useBase = r.checkRequest !== undefined;
  const method = r.method ?? (useBase ? http.method : undefined) ?? 'GET';
  const path = r.path ?? (useBase ? http.path : undefined) ?? '/';
  const host = r.host ?? (useBase ? http.host : undefined) ?? 'example.com';
  Object.assign(http, { method, path, host, scheme: r.scheme ?? http.scheme ?? 'https' });
  Object.assign(headers, { ':method': method, ':path': path, ':authority': host });
  for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
  const tokens: TokenSpec[] = [...(r.token ? [r.token] : []), ...(r.tokens ?? [])];
  for (const t of tokens) {
    const header = (t.header ?? 'authorization').toLowerCase();
    headers[header] = `${t.prefix ?? (header === 'authorization' ? 'Bearer ' : '')}${minter.mint(t)}`;
  }
  http.headers = headers;
  attrs.request = { ...(attrs.request ?? {}), http };
  if (r.contextExtensions) attrs.context_extensions = { ...(attrs.context_extensions ?? {}), ...r.contextExtensions };
  const src = peerOf(r.source);
  const dst = peerOf(r.destination);
  if (src) attrs.source = { ...(attrs.source ?? {}), ...src };
  if (dst) attrs.destination = { ...(attrs.destination ?? {}), ...dst };
  if (r.sni !== undefined) attrs.tls_session = { sni: r.sni };
  return { attributes: attrs };
}

function headerMap(list: readonly { header: { key: string; value: string } }[] | undefined): Map<string, string> {
  return new Map((list ?? []).map((h) => [h.header.key.toLowerCase(), h.header.value]));
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Compare a response with a case's expectations; an empty list means it passed. */
export function compare(e: ExpectSpec, d: Decision, resp: CheckResponseObject): Difference[] {
  const diffs: Difference[] = [];
  const allow = resp.status.code === 0;
  const meta = decisionMetadata(d);
  const check = (field: string, expected: unknown, actual: unknown) => {
    if (expected !== undefined && !deepEqual(expected, actual)) diffs.push({ field, expected, actual: actual ?? null });
  };
  check('decision', e.decision, allow ? 'allow' : 'deny');
  check('status', e.status, allow ? 200 : resp.denied_response?.status.code);
  check('reason', e.reason, meta['reason']);
  check('policy', e.policy, meta['policy']);
  check('rule', e.rule, meta['rule']);
  check('body', e.body, allow ? '' : resp.denied_response?.body);
  check('principal', e.principal, meta['principal']);
  check('actor', e.actor, meta['actor']);
  const present = (field: string, want: Record<string, string>, got: Map<string, string>) => {
    for (const [k, v] of Object.entries(want)) {
      const actual = got.get(k.toLowerCase());
      if (v === '*' ? actual === undefined : actual !== v) diffs.push({ field: `${field}.${k}`, expected: v === '*' ? '(set)' : v, actual: actual ?? '(not set)' });
    }
  };
  if (e.headers) present('headers', e.headers, headerMap(resp.denied_response?.headers));
  const up = e.upstream;
  if (up) {
    if (!allow) diffs.push({ field: 'upstream', expected: 'an allowed request', actual: `denied (${meta['reason']})` });
    else {
      const set = headerMap(resp.ok_response?.headers);
      const removed = new Set((resp.ok_response?.headers_to_remove ?? []).map((h) => h.toLowerCase()));
      if (up.headers) present('upstream.headers', up.headers, set);
      for (const h of up.absent ?? []) if (set.has(h.toLowerCase())) diffs.push({ field: `upstream.absent.${h}`, expected: '(not set)', actual: set.get(h.toLowerCase()) });
      for (const h of up.removed ?? []) if (!removed.has(h.toLowerCase())) diffs.push({ field: `upstream.removed.${h}`, expected: '(removed)', actual: '(not removed)' });
      if (up.token) diffs.push(...compareToken(up.token, set));
    }
  }
  return diffs;
}

function compareToken(t: NonNullable<NonNullable<ExpectSpec['upstream']>['token']>, set: Map<string, string>): Difference[] {
  const header = (t.header ?? 'authorization').toLowerCase();
  const value = set.get(header);
  if (value === undefined) return [{ field: `upstream.token.${header}`, expected: '(a token)', actual: '(not set)' }];
  let payload: Record<string, unknown>;
  try {
    payload = decodeJwt(value.replace(/^bearer\s+/i, ''));
  } catch {
    return [{ field: `upstream.token.${header}`, expected: '(a JWT)', actual: '(not a JWT)' }];
  }
  const diffs: Difference[] = [];
  for (const [c, v] of Object.entries(t.claims)) {
    if (v === null ? c in payload : !deepEqual(v, payload[c])) diffs.push({ field: `upstream.token.claims.${c}`, expected: v ?? '(absent)', actual: payload[c] ?? '(absent)' });
  }
  return diffs;
}

export interface RunContext {
  readonly config: CompiledConfig;
  readonly runtime: Runtime;
  readonly minter: TokenMinter;
  readonly tableFile: string;
  readonly defaults: RequestSpec | undefined;
}

/** Run one case; never throws (a case that cannot run is an `error` result). */
export async function runCase(c: CaseSpec, index: number, ctx: RunContext, explain = false): Promise<CaseResult> {
  if (c.skip) return { name: c.name, index, status: 'skip', differences: [] };
  let req: RawCheckRequest;
  try {
    req = await buildRequest(mergeRequest(ctx.defaults, c.request), ctx.minter, ctx.tableFile, `cases[${index}].request`);
  } catch (e) {
    return { name: c.name, index, status: 'error', differences: [], error: e instanceof Error ? e.message : String(e) };
  }
  const d = await evaluate(req, ctx.config, ctx.runtime, { explain });
  const resp = toCheckResponse(d, { reasonHeader: ctx.config.settings.reasonHeader });
  const differences = compare(c.expect, d, resp);
  return { name: c.name, index, status: differences.length === 0 ? 'pass' : 'fail', differences, decision: d };
}
