/**
 * The decision log: one JSON line per decision with the request id, decision, reason code,
 * deciding policy/rule, subject, actor, audience and latency. Never a token: only
 * principals (iss/sub), which are identifiers, not credentials.
 *
 * One line per Check is on the hot path, so the line is built by hand (decisionLine) in the
 * same shape pino gives every other log line (level, time, service, name, component, ...,
 * msg) and handed to a LineSink, by default a LineWriter that batches lines into few
 * asynchronous writes. Going through pino cost ~9 µs per Check (object serialisation, and
 * sonic-boom measuring its whole pending buffer on every write); this costs ~1 µs.
 */
import type { Settings } from '../config/settings.js';
import type { Decision } from '../core/decision.js';
import type { DecisionSink, LineSink, SecretRegistry } from '../core/runtime.js';
import { flat } from '../core/flat.js';
import { jsonString } from './json-string.js';
import { capText, LOG_STRING_MAX } from './redact.js';

export type { DecisionSink, LineSink };


let lastMs = -1;
let lastIso = '';
let lastSec = -1;
let secPrefix = '';
/** pino's isoTime (`new Date().toISOString()`), with the date formatted once per second. */
export function isoNow(ms: number = Date.now()): string {
  if (ms !== lastMs) {
    lastMs = ms;
    const sec = Math.floor(ms / 1000);
    if (sec !== lastSec) {
      lastSec = sec;
      secPrefix = new Date(sec * 1000).toISOString().slice(0, 20); // up to and including '.'
    }
    const frac = ms - sec * 1000;
    lastIso = `${secPrefix}${frac < 10 ? '00' : frac < 100 ? '0' : ''}${frac}Z`;
  }
  return lastIso;
}

const PREFIX = '{"level":"info","time":"';
const BASE = '","service":"obo-authz","name":"obo-authz","component":"decision"';
/** A string as JSON (exactly JSON.stringify's output). */
const q = jsonString;

/**
 * JSON fragments of values that repeat from line to line (reason codes are a closed set,
 * policy names come from config), kept in small maps emptied when they grow past a bound.
 */
const FRAGMENTS_MAX = 4096;
const verdicts = new Map<string, string>();
const policies = new Map<string, string[]>();

/** `"decision":…,"reason":…` and the transport, as one fragment (the last one kept: most lines repeat it). */
let lastAllow = true;
let lastReason = '';
let lastVerdictTransport: string | undefined;
let lastVerdict = '';
function verdictFragment(allow: boolean, reason: string, transport: string | undefined): string {
  if (reason === lastReason && allow === lastAllow && transport === lastVerdictTransport) return lastVerdict;
  const key = `${allow ? '+' : '-'}${transport ?? ''}\u0000${reason}`;
  let f = verdicts.get(key);
  if (f === undefined) {
    f = flat(`"decision":"${allow ? 'allow' : 'deny'}","reason":${q(reason)}${transport ? `,"transport":${q(transport)}` : ''}`);
    if (verdicts.size >= FRAGMENTS_MAX) verdicts.clear();
    verdicts.set(key, f);
  }
  lastAllow = allow;
  lastReason = reason;
  lastVerdictTransport = transport;
  return (lastVerdict = f);
}

/** `,"policy":…` and, when there is one, `,"rule":N`, as one fragment. */
function policyFragment(policy: string, rule: number | undefined): string {
  let byRule = policies.get(policy);
  if (byRule === undefined) {
    byRule = [];
    if (policies.size >= FRAGMENTS_MAX) policies.clear();
    policies.set(policy, byRule);
  }
  const i = rule === undefined ? 0 : rule + 1;
  let f = byRule[i];
  if (f === undefined) {
    f = flat(`,"policy":${q(policy)}${rule === undefined ? '' : `,"rule":${rule}`}`);
    // rule indexes are small (rules of one policy); a large one is not kept
    if (i < 64) byRule[i] = f;
  }
  return f;
}

/** A fragment made from one string, the last one kept: consecutive lines mostly share it. */
class LastFragment {
  private key: string | undefined = undefined;
  private value = '';
  constructor(private readonly make: (key: string) => string) {}
  of(key: string): string {
    if (key !== this.key) {
      this.key = key;
      this.value = flat(this.make(key));
    }
    return this.value;
  }
}

/** The head of every line, up to `"request_id":`, made once per millisecond (its time). */
const lineHead = new LastFragment((time) => `${PREFIX}${time}${BASE},"request_id":`);

/**
 * The request's fields (method, host, path, client address) as one fragment, the last one
 * kept: a proxy's Checks for one route (an MCP server's `/mcp`) repeat it line after line.
 */
let lastMethod = '';
let lastHost = '';
let lastPath = '';
let lastIp: string | undefined = '';
let lastRequestFragment = '';
function requestFragment(method: string, host: string, path: string, ip: string | undefined): string {
  if (method !== lastMethod || host !== lastHost || path !== lastPath || ip !== lastIp) {
    lastMethod = method;
    lastHost = host;
    lastPath = path;
    lastIp = ip;
    lastRequestFragment = flat(
      `,"method":${q(c(method, 64))},"host":${q(c(host, ID_MAX))},"path":${q(c(path, LOG_STRING_MAX))}${ip ? `,"client_address":${q(c(ip, 64))}` : ''}`,
    );
  }
  return lastRequestFragment;
}

/** `,"principal":…`, the last one kept (one client's Checks come in runs). */
const principalFragment = new LastFragment((principal) => `,"principal":${q(c(principal, PRINCIPAL_MAX))}`);

export type ClientAddressMode = 'remote' | 'peer' | 'none';

/** Longest request id, host, principal and MCP value kept in a decision line (request data). */
export const ID_MAX = 256;
export const PRINCIPAL_MAX = 512;
const c = capText;

/**
 * One decision as one JSON line. Field names are those of the CheckResponse's
 * dynamic_metadata where both carry a value (request_id, decision, reason, policy, rule,
 * principal, actor, audience, exchange_policy, audit, shadow, end_user, mcp_*), so a log
 * query and an Envoy access log (%DYNAMIC_METADATA(envoy.filters.http.ext_authz:reason)%) use
 * the same names. Then what was asked (method, host, path without the query, client_address)
 * and, when present, status and detail (denies), exchange_cache, latency_ms; `transport`
 * (grpc or http) when the log belongs to a transport. Every string is escaped exactly as
 * JSON.stringify would (request ids, hosts, paths and principals are request data) and capped in
 * length (an attacker chooses the request id, the path, the MCP tool name; a token's `kid`
 * can end up in the detail); the detail, which may quote a remote party, is scrubbed of
 * configured secrets when a registry is given.
 */
export function decisionLine(
  d: Decision,
  latencyMs: number,
  time: string = isoNow(),
  clientAddress: ClientAddressMode = 'remote',
  transport?: string,
  secrets?: SecretRegistry,
): string {
  let s = `${lineHead.of(time)}${q(c(d.requestId, ID_MAX))},${verdictFragment(d.allow, d.reason, transport)}`;
  const r = d.request;
  if (r) s += requestFragment(r.method, r.host, r.path, clientAddress === 'none' ? '' : clientAddress === 'remote' ? r.remoteIp : r.source.ip);
  if (!d.allow) s += `,"status":${d.httpStatus},"detail":${q(c(secrets ? secrets.scrub(d.message) : d.message, LOG_STRING_MAX))}`;
  const a = d.attribution;
  if (a.policy) s += policyFragment(a.policy, a.rule);
  else if (a.rule !== undefined) s += `,"rule":${a.rule}`;
  if (d.identity) s += principalFragment.of(d.identity.principal);
  if (d.actor) s += `,"actor":${q(c(d.actor.principal, PRINCIPAL_MAX))}`;
  if (a.audience) s += `,"audience":${q(c(a.audience, PRINCIPAL_MAX))}`;
  if (a.exchangePolicy) s += `,"exchange_policy":${q(a.exchangePolicy)}`;
  if (a.exchangeCache) s += `,"exchange_cache":${q(a.exchangeCache)}`;
  if (a.audit?.length) s += `,"audit":${JSON.stringify(a.audit)}`;
  if (a.shadow?.length) s += `,"shadow":${JSON.stringify(a.shadow)}`;
  if (a.endUser !== undefined) s += `,"end_user":${q(c(a.endUser, PRINCIPAL_MAX))}`;
  const m = a.mcp;
  if (m) {
    if (m.server) s += `,"mcp_server":${q(m.server)}`;
    if (m.method !== undefined) s += `,"mcp_method":${q(c(m.method, PRINCIPAL_MAX))}`;
    if (m.tool !== undefined) s += `,"mcp_tool":${q(c(m.tool, PRINCIPAL_MAX))}`;
    if (m.resource !== undefined) s += `,"mcp_resource":${q(c(m.resource, PRINCIPAL_MAX))}`;
    if (m.prompt !== undefined) s += `,"mcp_prompt":${q(c(m.prompt, PRINCIPAL_MAX))}`;
    if (m.id !== undefined) s += `,"mcp_id":${q(c(m.id, PRINCIPAL_MAX))}`;
    if (m.batch !== undefined) s += `,"mcp_batch":${JSON.stringify(m.batch)}`;
    if (m.sessionId !== undefined) s += `,"mcp_session_id":${q(c(m.sessionId, PRINCIPAL_MAX))}`;
  }
  return `${s},"latency_ms":${Math.round(latencyMs * 1000) / 1000},"msg":"decision"}\n`;
}


export class DecisionLog {
  constructor(
    private readonly out: LineSink,
    private readonly random: () => number = Math.random,
    /** `grpc` or `http`: which transport the Check came in on (a field of every line). */
    private readonly transport?: string,
    /** Configured secrets, scrubbed from the detail. */
    private readonly secrets?: SecretRegistry,
  ) {}

  record(settings: Settings, d: Decision, latencyMs: number): void {
    const cfg = settings.decisionLog;
    if (!cfg.enabled) return;
    // Denies are always logged; allows are sampled (audit/shadow outcomes always logged).
    const a = d.attribution;
    const mustLog = !d.allow || (a.audit !== undefined && a.audit.length > 0) || (a.shadow !== undefined && a.shadow.length > 0);
    if (!mustLog && cfg.allowSampleRate < 1 && this.random() >= cfg.allowSampleRate) return;
    this.out.write(decisionLine(d, latencyMs, isoNow(), cfg.clientAddress, this.transport, this.secrets));
  }
}

export { LineWriter, sharedLineWriter, type LineWriterOptions } from './line-writer.js';
