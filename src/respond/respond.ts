/**
 * Decision -> CheckResponse. Allow: status.code 0 and ok_response with
 * headers set by overwrite (both `append: false` and OVERWRITE_IF_EXISTS_OR_ADD, which
 * every Envoy version honours) and headers_to_remove. A header that is set is never also
 * listed for removal: Envoy applies removals after sets, so that would drop it. Deny:
 * non-zero status and an explicit denied_response (never error_response, which follows
 * failure_mode_allow).
 */
import { REASONS } from '../core/reasons.js';
import type { Decision } from '../core/decision.js';
import { isValidHeaderName, isValidHeaderValue } from '../core/headers.js';
import { capText } from '../observability/redact.js';

/** Longest request-data string put in dynamic_metadata (Envoy copies it into access logs). */
const METADATA_STRING_MAX = 512;

export const OVERWRITE_IF_EXISTS_OR_ADD = 2;
export const APPEND_IF_EXISTS_OR_ADD = 0;
export const REASON_HEADER = 'x-obo-authz-reason';

export interface HeaderValueOption {
  header: { key: string; value: string };
  append: { value: boolean };
  append_action: number;
}

export interface CheckResponseObject {
  status: { code: number; message: string };
  ok_response?: {
    headers: HeaderValueOption[];
    headers_to_remove: string[];
    response_headers_to_add: HeaderValueOption[];
    query_parameters_to_remove: string[];
  };
  denied_response?: {
    status: { code: number };
    headers: HeaderValueOption[];
    body: string;
  };
  dynamic_metadata: StructObject;
}

type ValueObject =
  | { stringValue: string }
  | { numberValue: number }
  | { boolValue: boolean }
  | { structValue: StructObject }
  | { listValue: { values: ValueObject[] } };
export interface StructObject {
  fields: Record<string, ValueObject>;
}

function toValue(v: unknown): ValueObject {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  if (v && typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

export function toStruct(o: Record<string, unknown>): StructObject {
  const fields: Record<string, ValueObject> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) fields[k] = toValue(v);
  return { fields };
}


// Shared, never mutated parts of every response (one Check, one response: fewer objects).
const APPEND_FALSE = Object.freeze({ value: false });
const APPEND_TRUE = Object.freeze({ value: true });
const NO_HEADERS: HeaderValueOption[] = Object.freeze([]) as unknown as HeaderValueOption[];
const NO_STRINGS: string[] = Object.freeze([]) as unknown as string[];
const STATUS_OK = Object.freeze({ code: 0, message: '' });

function hvo(key: string, value: string): HeaderValueOption {
  return { header: { key, value }, append: APPEND_FALSE, append_action: OVERWRITE_IF_EXISTS_OR_ADD };
}

/**
 * Dynamic metadata (under envoy.filters.http.ext_authz in Envoy): reason, policy, rule,
 * subject. Never a token. The one list of its fields, in order, for both forms below.
 */
function forEachMetadataField(d: Decision, f: (key: string, value: string | number | readonly unknown[]) => void): void {
  const a = d.attribution;
  f('decision', d.allow ? 'allow' : 'deny');
  f('reason', d.reason);
  if (a.policy) f('policy', a.policy);
  if (a.rule !== undefined) f('rule', a.rule);
  if (d.identity) f('principal', capText(d.identity.principal, METADATA_STRING_MAX));
  if (d.actor) f('actor', capText(d.actor.principal, METADATA_STRING_MAX));
  if (a.exchangePolicy) f('exchange_policy', a.exchangePolicy);
  if (a.audience) f('audience', capText(a.audience, METADATA_STRING_MAX));
  if (a.audit?.length) f('audit', a.audit);
  if (a.shadow?.length) f('shadow', a.shadow);
  // Request data (an end-user header, MCP names and ids): capped, as Envoy copies them into access logs.
  const cap = (v: string) => capText(v, METADATA_STRING_MAX);
  if (a.endUser !== undefined) f('end_user', cap(a.endUser));
  const m = a.mcp;
  if (m) {
    // Flat keys, for access logs: %DYNAMIC_METADATA(envoy.filters.http.ext_authz:mcp_tool)%.
    if (m.server) f('mcp_server', m.server);
    if (m.method !== undefined) f('mcp_method', cap(m.method));
    if (m.tool !== undefined) f('mcp_tool', cap(m.tool));
    if (m.resource !== undefined) f('mcp_resource', cap(m.resource));
    if (m.prompt !== undefined) f('mcp_prompt', cap(m.prompt));
    if (m.id !== undefined) f('mcp_id', cap(m.id));
    if (m.batch !== undefined) f('mcp_batch', m.batch);
    if (m.sessionId !== undefined) f('mcp_session_id', cap(m.sessionId));
  }
  if (d.requestId) f('request_id', cap(d.requestId));
}

/** The dynamic metadata as plain values (--explain, tests). */
export function decisionMetadata(d: Decision): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  forEachMetadataField(d, (k, v) => {
    m[k] = k === 'shadow' ? (v as readonly object[]).map((x) => ({ ...x })) : v;
  });
  return m;
}

/** The dynamic metadata as a Struct, built directly (no intermediate record). */
function metadataStruct(d: Decision): StructObject {
  const fields: Record<string, ValueObject> = {};
  forEachMetadataField(d, (k, v) => {
    fields[k] = toValue(v);
  });
  return { fields };
}

export interface RespondOptions {
  readonly reasonHeader: boolean;
}

/**
 * Build the CheckResponse from a final Decision. It decides nothing: an allow whose upstream
 * headers could not be sent was turned into a deny by the pipeline already, so reaching one
 * here is a bug, thrown for the transport's fail-closed path (never sent, never skipped:
 * skipping a set header would also skip the removal it replaces).
 */
export function toCheckResponse(d: Decision, opts: RespondOptions): CheckResponseObject {
  const metadata = metadataStruct(d);
  if (d.allow) {
    const headers: HeaderValueOption[] = [];
    for (const [k, v] of d.upstream.set) {
      if (!isValidHeaderName(k) || !isValidHeaderValue(v)) throw new Error('allow decision with an unsendable upstream header');
      headers.push(hvo(k, v));
    }
    const remove: string[] = [];
    for (const k of d.upstream.remove) if (!d.upstream.set.has(k)) remove.push(k);
    const added = d.upstream.responseHeaders();
    let responseAdd = NO_HEADERS;
    if (added.size > 0) {
      responseAdd = [];
      for (const [k, v] of added) if (isValidHeaderValue(v)) responseAdd.push(hvo(k, v));
    }
    // Lines that must not replace one another (several `set-cookie`): Envoy >= 1.21 adds a
    // response_headers_to_add entry with `append: true` as its own header line (addCopy);
    // with `append` false or unset it would overwrite, so only the last cookie would arrive.
    const lines = d.upstream.responseLines();
    if (lines) {
      if (responseAdd === NO_HEADERS) responseAdd = [];
      for (const [k, v] of lines) {
        if (isValidHeaderName(k) && isValidHeaderValue(v)) responseAdd.push({ header: { key: k, value: v }, append: APPEND_TRUE, append_action: APPEND_IF_EXISTS_OR_ADD });
      }
    }

    return {
      status: STATUS_OK,
      ok_response: {
        headers,
        headers_to_remove: remove,
        response_headers_to_add: responseAdd,
        query_parameters_to_remove: d.upstream.queryRemovals() ?? NO_STRINGS,
      },
      dynamic_metadata: metadata,
    };
  }
  return denyResponse(d.httpStatus, REASONS[d.reason].grpc || 7, d.body, d.denyHeaders, d.reason, opts, metadata);
}

function denyResponse(
  http: number,
  grpc: number,
  body: string,
  headers: ReadonlyArray<readonly [string, string]>,
  reason: string,
  opts: RespondOptions,
  metadata: StructObject,
): CheckResponseObject {
  const hs = headers.filter(([, v]) => isValidHeaderValue(v)).map(([k, v]) => hvo(k, v));
  if (opts.reasonHeader) hs.push(hvo(REASON_HEADER, reason));
  return {
    // A non-zero status denies; never 0 here, whatever the table says.
    status: { code: grpc === 0 ? 7 : grpc, message: reason },
    denied_response: { status: { code: http }, headers: hs, body },
    dynamic_metadata: metadata,
  };
}
