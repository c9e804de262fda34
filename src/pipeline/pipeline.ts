/**
 * One Check, start to finish. The phases run in order; each either lets the request go
 * on or returns a Deny value. The result is always a Decision: an exception anywhere
 * becomes ERR_INTERNAL (a deny), and a Check that would outlive its deadline is answered
 * with an explicit 503 (ERR_DEADLINE) before Envoy's own timeout fires.
 */
import { authenticate } from '../authn/index.js';
import { login, requireLogin } from '../login/index.js';
import type { CompiledConfig } from './compile.js';
import { REASONS, type ReasonCode } from '../core/reasons.js';
import { isValidHeaderName, isValidHeaderValue } from '../core/headers.js';
import { isCanonicalPath } from '../core/path.js';
import { timerDelay } from '../core/timers.js';
import { exchange } from '../exchange/index.js';
import type { CompiledMcpServer } from '../mcp/index.js';
import { mcpAfterAuthn, mcpAuthorize, mcpBeforeAuthn, mcpRecord, type McpPhaseState } from './mcp-phases.js';
import { sanitizeRemoteText } from '../observability/redact.js';
import { buildRequestContext, type RawCheckRequest, type RequestContext } from '../core/context.js';
import type { Decision } from '../core/decision.js';
import type { Runtime } from '../core/runtime.js';
import type { Identity } from '../core/identity.js';
import { NO_TOKEN_LOCATIONS, Trace, UpstreamMutations, type TokenLocation, type CheckState, type DecisionAttribution, type Deny } from '../core/state.js';

export interface EvaluateOptions {
  /** Absolute deadline (ms since epoch) from grpc-timeout; undefined = Settings.defaultTimeout. */
  readonly deadline?: number;
  readonly explain?: boolean;
  /**
   * What the caller's transport cannot carry of an allow (the HTTP authorization transport
   * cannot rewrite the query string): a message turns the allow into ERR_TRANSPORT_UNSUPPORTED
   * before the Decision is final, so the answer, the metric and the decision log agree.
   */
  readonly unsupported?: (up: UpstreamMutations) => string | null;
  /** The time (ms since epoch) the caller read for this Check, when it read one (saves a clock read); default runtime.now(). */
  readonly now?: number;
  /** The transport made every request header name lower case itself (RequestContext skips the check). */
  readonly headersLowerCase?: boolean;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

/**
 * Phases 1a-4. Synchronous as long as every stage answers synchronously (the common case:
 * a cached token, no exchange), so the hot path allocates no promise, timer or abort
 * controller; it turns asynchronous at the first stage that returns a promise.
 */
function runStages(state: McpPhaseState, cfg: CompiledConfig): Deny | null | Promise<Deny | null> {
  // phase 1a: the MCP front door (protected-resource metadata answered directly, before a
  // browser login could redirect it; the request's MCP server and view)
  const m = mcpBeforeAuthn(state, cfg.mcp);
  if (m) return m;
  // phase 1b: browser login (OIDCLogin): callback/logout answers, session -> state.identity
  if (cfg.login.count === 0) return runAuthn(state, cfg);
  const l = login(state, cfg.login);
  if (isPromise(l)) return l.then((d) => (d ? d : runAuthn(state, cfg)));
  if (l) return l;
  return runAuthn(state, cfg);
}

function runAuthn(state: McpPhaseState, cfg: CompiledConfig): Deny | null | Promise<Deny | null> {
  // phase 2: authenticate (jwtRules and the credential chain) -> state.identity
  const a = authenticate(state, cfg.authn);
  if (isPromise(a)) return a.then((d) => afterAuthn(state, cfg, d));
  return afterAuthn(state, cfg, a);
}

function afterAuthn(state: McpPhaseState, cfg: CompiledConfig, authnDeny: Deny | null): Deny | null | Promise<Deny | null> {
  // on an MCP resource, authn's 401s become MCP challenges (and a token is required)
  const a = mcpAfterAuthn(state, authnDeny);
  if (a) return a;
  // A login-protected API client that authn did not admit either: 401, never anonymous.
  if (state.loginRequired) {
    const r = requireLogin(state);
    if (r) return r;
  }
  // phase 3: authorize (AuthorizationPolicy DENY -> ALLOW, AUDIT logged; per batch element; MCP scopes)
  const d = mcpAuthorize(state, cfg.authz);
  if (d) return d;
  // phase 4: exchange (RFC 8693 on-behalf-of) -> upstream Authorization
  return exchange(state, cfg.exchange);
}

/**
 * An allow whose upstream headers cannot be sent (a CR, LF or NUL in a value, e.g. a signed
 * claim forwarded by outputClaimToHeaders; a name Envoy would refuse) becomes a deny here,
 * before the Decision is final, so the response, the metric and the decision log agree.
 */
function unsendable(state: CheckState): Deny | null {
  for (const [k, v] of state.upstream.set) {
    if (!isValidHeaderName(k) || !isValidHeaderValue(v)) {
      state.trace?.add('respond', `upstream header ${JSON.stringify(k)} has a value that cannot be sent (CR, LF or NUL): denied 400`);
      return { reason: 'ERR_BAD_REQUEST', message: `upstream header ${JSON.stringify(k.slice(0, 64))} cannot be sent (invalid name or CR/LF/NUL in its value)` };
    }
  }
  return null;
}

function transportLimit(state: CheckState, unsupported: EvaluateOptions['unsupported']): Deny | null {
  const why = unsupported?.(state.upstream);
  if (!why) return null;
  state.trace?.add('respond', `${why}: denied`);
  return { reason: 'ERR_TRANSPORT_UNSUPPORTED', message: why };
}

function toDecision(state: PipelineState, d: Deny | null, requestId: string, unsupported?: EvaluateOptions['unsupported']): Decision {
  if (!d) d = unsendable(state) ?? transportLimit(state, unsupported);
  mcpRecord(state);
  if (!d) {
    return {
      allow: true,
      reason: 'OK',
      httpStatus: 200,
      body: '',
      denyHeaders: [],
      upstream: state.upstream,
      attribution: state.attribution,
      identity: state.identity,
      actor: state.actor,
      message: 'allowed',
      trace: state.trace,
      requestId,
      request: state.ctx,
    };
  }
  const info = REASONS[d.reason];
  if (d.policy !== undefined) state.attribution.policy = d.policy;
  if (d.rule !== undefined) state.attribution.rule = d.rule;
  return {
    allow: false,
    reason: d.reason,
    httpStatus: d.status ?? info.http,
    body: d.body ?? info.body,
    denyHeaders: d.headers ?? [],
    upstream: state.upstream,
    attribution: state.attribution,
    identity: state.identity,
    actor: state.actor,
    message: d.message,
    trace: state.trace,
    requestId,
    request: state.ctx,
  };
}

/** A deny decided before (or instead of) the stages: no config, deadline, a transport's refusal. */
export function internalDecision(reason: ReasonCode, message: string, requestId: string, trace: Trace | null, request?: RequestContext): Decision {
  return {
    allow: false,
    reason,
    httpStatus: REASONS[reason].http,
    body: REASONS[reason].body,
    denyHeaders: [],
    upstream: new UpstreamMutations(),
    attribution: {},
    identity: null,
    actor: null,
    message,
    trace,
    requestId,
    ...(request ? { request } : {}),
  };
}

/** An exception anywhere in the stages: logged (sanitized) and answered with a 500 deny. */
function failClosed(e: unknown, runtime: Runtime, requestId: string, trace: Trace | null, ctx?: RequestContext): Decision {
  runtime.logger.error({ requestId, err: sanitizeRemoteText(e instanceof Error ? `${e.name}: ${e.message}` : String(e)) }, 'internal error in pipeline');
  trace?.add('respond', 'internal error: denied (fail closed)');
  return internalDecision('ERR_INTERNAL', 'internal error in pipeline', requestId, trace, ctx);
}

/** Evaluate one CheckRequest against a compiled config. Never throws, never allows on error. */
export async function evaluate(
  raw: RawCheckRequest,
  cfg: CompiledConfig | null,
  runtime: Runtime,
  opts: EvaluateOptions = {},
): Promise<Decision> {
  return evaluateCheck(raw, cfg, runtime, opts);
}

/**
 * evaluate() without the promise when no stage went asynchronous: the gRPC handler answers
 * a cached-token Check in the same tick, with no promise or microtask per Check.
 */
export function evaluateCheck(
  raw: RawCheckRequest,
  cfg: CompiledConfig | null,
  runtime: Runtime,
  opts: EvaluateOptions = {},
): Decision | Promise<Decision> {
  const trace = opts.explain ? new Trace() : null;
  if (!cfg) return internalDecision('ERR_UNAVAILABLE', 'no configuration loaded', '', trace);
  const now = opts.now ?? runtime.now();
  const settings = cfg.settings;
  const callerDeadline = opts.deadline ?? now + settings.defaultTimeoutMs;
  // Answer `deadlineMargin` before the caller gives up, so Envoy gets our explicit 503.
  const answerBy = callerDeadline - settings.deadlineMarginMs;

  let ctx: RequestContext;
  try {
    // phase 1: build the RequestContext once
    ctx = buildRequestContext(raw, { settings, deadline: answerBy, headersLowerCase: opts.headersLowerCase });
  } catch (e) {
    runtime.logger.error({ err: sanitizeRemoteText(String(e)) }, 'cannot build request context');
    return internalDecision('ERR_INTERNAL', 'cannot build request context', '', trace);
  }
  const requestId = ctx.id;
  if (answerBy - now <= 0) {
    return internalDecision('ERR_DEADLINE', 'deadline already passed on arrival', requestId, trace, ctx);
  }
  // Policies match the path the proxy forwards; one it did not normalize as configured
  // (`/api/../admin`, `/api/%2e%2e/admin`) is refused rather than matched literally.
  if (!isCanonicalPath(ctx.path, settings.pathNormalization)) {
    trace?.add('context', `path is not in ${settings.pathNormalization} canonical form: denied 400`);
    return internalDecision('ERR_PATH_NOT_CANONICAL', `path not in ${settings.pathNormalization} canonical form`, requestId, trace);
  }

  const state = new PipelineState(ctx, runtime, trace);
  trace?.add('context', `workload namespace=${ctx.workload.namespace} labels=${JSON.stringify(ctx.workload.labels)}${ctx.workload.hasLabels ? '' : ' (none: selector policies apply)'}`);

  let r: Deny | null | Promise<Deny | null>;
  try {
    r = runStages(state, cfg);
  } catch (e) {
    return failClosed(e, runtime, requestId, trace, ctx);
  }
  if (!isPromise(r)) return toDecision(state, r, requestId, opts.unsupported);
  return raceDeadline(r, state, answerBy, requestId, opts.unsupported);
}

const NO_IDENTITIES: readonly Identity[] = Object.freeze([]);

/**
 * The per-Check state. The abort controller is made only when a stage asks for the signal
 * (a remote call), or when the deadline passes.
 */
class PipelineState implements McpPhaseState {
  identity: Identity | null = null;
  mcpServer: CompiledMcpServer | null = null;
  mcp: CheckState['mcp'] = undefined;
  identities: readonly Identity[] = NO_IDENTITIES;
  actor: Identity | null = null;
  tokenLocations: readonly TokenLocation[] = NO_TOKEN_LOCATIONS;
  readonly upstream = new UpstreamMutations();
  readonly attribution: DecisionAttribution = {};
  loginRequired: Deny | null = null;
  abort: AbortController | undefined = undefined;
  constructor(
    readonly ctx: RequestContext,
    readonly runtime: Runtime,
    readonly trace: Trace | null,
  ) {}
  get signal(): AbortSignal {
    return (this.abort ??= new AbortController()).signal;
  }
}

/**
 * A stage went asynchronous (a JWKS fetch, a TokenReview, an STS call): race it against
 * the deadline so Envoy always gets our explicit answer first.
 */
async function raceDeadline(
  r: Promise<Deny | null>,
  state: PipelineState,
  answerBy: number,
  requestId: string,
  unsupported: EvaluateOptions['unsupported'],
): Promise<Decision> {
  const { runtime, trace } = state;
  let timer: NodeJS.Timeout | undefined;
  try {
    const work = r.then(
      (d) => toDecision(state, d, requestId, unsupported),
      (e: unknown) => failClosed(e, runtime, requestId, trace, state.ctx),
    );
    const timeout = new Promise<Decision>((resolve) => {
      timer = setTimeout(() => {
        (state.abort ??= new AbortController()).abort(new Error('check deadline'));
        trace?.add('respond', 'deadline reached before a decision: 503');
        resolve(internalDecision('ERR_DEADLINE', 'deadline reached before a decision', requestId, trace, state.ctx));
      }, timerDelay(answerBy - runtime.now()));
      timer.unref?.();
    });
    return await Promise.race([work, timeout]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
