/**
 * The TokenExchangePolicy kind: which requests it applies to (scope + `match`, select.ts), the
 * target it asks its STS for, the mode (Impersonation, or Delegation with an actor
 * (actor.ts) checked against a DelegationPolicy (delegation.ts)), what the upstream gets
 * (upstream.ts) and the exchange cache. Compiled once into an immutable CompiledPolicy that
 * carries everything the Check path needs, including its cache-key prefix and memos.
 */
import { compileToolVariants, toolTargetsSchema, type RawToolTarget, type ToolVariant } from './tools.js';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { any, bool, duration, num, obj, str, type Schema } from '../config/schema.js';
import { parseScope, scopeSpecificity, type CompiledScope } from '../config/scope.js';
import { actorSchema, compileActor, type CompiledActor, type RawActor } from './actor.js';
import { ExchangeCache, exchangeKeyPrefix, PolicyKeys, type ExchangeCacheOptions } from './cache.js';
import { asList, resolveRef, strOrList, strs } from './compile-helpers.js';
import { compileSharedCache, sharedCacheSchema, type RawSharedCache, type SharedTokenCache } from '../redis/shared-cache.js';
import type { CompiledDelegationPolicy } from './delegation.js';
import type { ExchangeMetrics } from './metrics.js';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT } from './oauth.js';
import { compileMatch, matchSchema, type MatchSpec, type RawMatch } from './select.js';
import type { CompiledSts, StsTarget } from './sts.js';
import { compileUpstream, upstreamSchema, type CompiledUpstream, type RawUpstream } from './upstream.js';

interface RawTarget {
  audience?: string | string[];
  resource?: string | string[];
  scopes?: string[];
  requestedTokenType?: string;
}
interface RawCache {
  enabled?: boolean;
  /** Opt-in: the cache shared by replicas in Redis (redis/shared-cache.ts). */
  shared?: RawSharedCache;
  maxEntries?: number;
  skew?: number;
  maxTtl?: number;
  negativeTtl?: number;
}
interface RawPolicy {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  match?: RawMatch;
  target?: RawTarget;
  mode?: 'Impersonation' | 'Delegation';
  sts?: string;
  subjectTokenType?: string;
  actor?: RawActor;
  delegationPolicy?: string;
  upstream?: RawUpstream;
  cache?: RawCache;
  tools?: RawToolTarget[];
}

const policySchema = obj<RawPolicy>(
  {
    selector: any(),
    targetRef: any(),
    targetRefs: any(),
    match: matchSchema,
    target: obj<RawTarget>({
      audience: strOrList(),
      resource: strOrList(),
      scopes: strs,
      requestedTokenType: str({ nonEmpty: true }),
    }),
    mode: str({ enum: ['Impersonation', 'Delegation'] }) as Schema<'Impersonation' | 'Delegation'>,
    sts: str({ nonEmpty: true }),
    subjectTokenType: str({ nonEmpty: true }),
    actor: actorSchema,
    delegationPolicy: str({ nonEmpty: true }),
    tools: toolTargetsSchema,
    upstream: upstreamSchema,
    cache: obj<RawCache>({
      enabled: bool(),
      maxEntries: num({ int: true, min: 1, max: 10_000_000 }),
      skew: duration({ minMs: 0, maxMs: 3_600_000 }),
      maxTtl: duration({ minMs: 1000, maxMs: 86_400_000 }),
      negativeTtl: duration({ minMs: 0, maxMs: 600_000 }),
      shared: sharedCacheSchema,
    }),
  },
  { required: ['target', 'sts'] },
);

/** What a policy asks its STS for (StsTarget: STS, audiences, resources, scopes, token types) and everything else the Check path needs. */
export interface CompiledPolicy extends StsTarget {
  readonly ref: string;
  readonly scope: CompiledScope;
  readonly specificity: number;
  readonly match: MatchSpec;
  readonly mode: 'Impersonation' | 'Delegation';
  /** Delegation only. */
  readonly actor: CompiledActor | null;
  /** Delegation only. */
  readonly delegation: CompiledDelegationPolicy | null;
  readonly upstream: CompiledUpstream;
  readonly cache: ExchangeCache | null;
  /** The cache shared with other replicas through Redis (opt-in), in front of the STS call. */
  readonly sharedCache: SharedTokenCache | null;
  /** Exchange cache keys: the per-policy constant prefix (STS identity, mode, targets, scopes, token types) and the subject memo. */
  readonly keys: PolicyKeys;
  /** The stage's metrics (one set per compiled config). */
  readonly metrics: ExchangeMetrics;
  /** token_exchange_cache_total{policy, result="hit"}, its label child resolved once. */
  readonly hits: { inc(): void };
  /** Per-tool variants (MCP tools/call, spec.tools): their own targets and cache keys. */
  readonly tools: readonly ToolVariant<CompiledPolicy>[];
}

function compileCache(k: KindDocument, c: RawCache = {}, cc: CompileContext): ExchangeCache | null {
  if (c.enabled === false) return null;
  const copts: ExchangeCacheOptions = {
    maxEntries: c.maxEntries ?? 10_000,
    skewMs: c.skew ?? 30_000,
    maxTtlMs: c.maxTtl ?? 300_000,
    negativeTtlMs: c.negativeTtl ?? 5_000,
  };
  return cc.runtime.shared.get(`exchange:cache:${k.ref}:${JSON.stringify(copts)}`, () => new ExchangeCache(copts, cc.runtime));
}

export function compilePolicy(
  k: KindDocument,
  cc: CompileContext,
  stss: ReadonlyMap<string, CompiledSts>,
  delegations: ReadonlyMap<string, CompiledDelegationPolicy>,
  metrics: ExchangeMetrics,
): CompiledPolicy | undefined {
  const spec = (k.spec ?? {}) as Record<string, unknown>;
  const s = policySchema.parse(spec, ['spec'], k.v);
  if (!s) return undefined;
  const scope = parseScope(k, spec, cc.settings);
  const v = k.v;
  const rootNs = cc.settings.rootNamespace;
  const mode = s.mode ?? 'Impersonation';
  const audiences = asList(s.target!.audience);
  const resources = asList(s.target!.resource);
  if (audiences.length === 0 && resources.length === 0) v.error(['spec', 'target', 'audience'], 'one of audience or resource is required');
  for (const [i, r] of resources.entries()) {
    // RFC 8693 §2.1: resource is an absolute URI.
    if (!/^[a-z][a-z0-9+.-]*:/i.test(r)) v.error(['spec', 'target', 'resource', ...(Array.isArray(s.target!.resource) ? [i] : [])], `resource ${JSON.stringify(r)} must be an absolute URI`);
  }
  const sts = resolveRef(stss, k, s.sts!, rootNs);
  if (!sts) v.error(['spec', 'sts'], `SecurityTokenService ${JSON.stringify(s.sts)} not found (looked in ${s.sts!.includes('/') ? s.sts : `${k.namespace} and ${rootNs}`})`);
  if (sts?.kind === 'builtin' && s.target!.requestedTokenType && ![TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT].includes(s.target!.requestedTokenType)) {
    v.error(['spec', 'target', 'requestedTokenType'], 'the builtin STS issues only access_token or jwt token types');
  }

  const actor = compileActor(s.actor, mode, k, cc);

  let delegation: CompiledDelegationPolicy | null = null;
  if (s.delegationPolicy) {
    if (mode !== 'Delegation') v.warn(['spec', 'delegationPolicy'], 'ignored when mode is Impersonation');
    delegation = resolveRef(delegations, k, s.delegationPolicy, rootNs) ?? null;
    if (!delegation) v.error(['spec', 'delegationPolicy'], `DelegationPolicy ${JSON.stringify(s.delegationPolicy)} not found`);
  } else if (mode === 'Delegation') {
    v.error(['spec', 'delegationPolicy'], 'required when mode is Delegation (which actors may act for which subjects and audiences)');
  }

  const upstream = compileUpstream(s.upstream, mode, actor?.source.header, v);
  const match = compileMatch(s.match);
  const specificity = Math.max(scopeSpecificity(scope), match.backends ? 2 : 0);
  const cache = compileCache(k, s.cache, cc);
  let sharedCache: SharedTokenCache | null = null;
  if (s.cache?.shared) {
    if (!cache) v.error(['spec', 'cache', 'shared'], 'a shared cache needs the local cache (cache.enabled must not be false)');
    else sharedCache = compileSharedCache(k, cc, ['spec', 'cache', 'shared'], s.cache.shared) ?? null;
  }

  if (v.hasErrors || !sts) return undefined;
  if (mode === 'Delegation' && (!actor || !delegation)) return undefined;
  const scopes = s.target!.scopes ?? [];
  const requestedTokenType = s.target!.requestedTokenType;
  const subjectTokenType = s.subjectTokenType ?? TOKEN_TYPE_ACCESS_TOKEN;
  const base: CompiledPolicy = Object.freeze({
    ref: k.ref,
    scope,
    specificity,
    match,
    mode,
    sts,
    audiences,
    resources,
    scopes,
    requestedTokenType,
    subjectTokenType,
    actor,
    delegation: mode === 'Delegation' ? delegation : null,
    upstream,
    cache,
    sharedCache,
    keys: new PolicyKeys(exchangeKeyPrefix(sts.id, mode, audiences, resources, scopes, requestedTokenType, subjectTokenType)),
    metrics,
    hits: metrics.cache.labels({ policy: k.ref, result: 'hit' }),
    tools: [],
  });
  if (!s.tools) return base;
  const tools = compileToolVariants(k, s.tools, base);
  return v.hasErrors ? undefined : Object.freeze({ ...base, tools });
}
