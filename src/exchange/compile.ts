/**
 * Compile TokenExchangePolicy, SecurityTokenService and DelegationPolicy documents once:
 * shape (unknown fields are errors), semantics, cross-document references (policy ->
 * STS, policy -> DelegationPolicy) and key material. Remote resources (STS clients,
 * keys, caches, TokenReview clients, token files) come from runtime.shared so a reload
 * with the same settings reuses them.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { any, bool, duration, list, num, obj, record, str, type Schema, type ValidationContext } from '../config/schema.js';
import { parseScope, scopeSpecificity, type CompiledScope } from '../config/scope.js';
import type { Path } from '../config/issues.js';
import { isValidHeaderName } from '../core/headers.js';
import { jwtActorValidator, tokenReviewActorValidator, type ActorTokenSource, type ActorValidator, type JwtVerifyFn } from './actor.js';
import { ExchangeCache, type ExchangeCacheOptions } from './cache.js';
import { compileDelegationRules, type CompiledDelegationPolicy, type MayActMode, type RawDelegationRule } from './delegation.js';
import { readTokenFile, sharedTokenFile } from '../kubernetes/file-token.js';
import { loadKey, type LoadedKey, type SigningAlg } from './keys.js';
import { BuiltinSts } from './sts-builtin.js';
import { RemoteStsClient, type ClientAuthMethod } from './sts-remote.js';
import { compileTokenReviewSettings, TOKENREVIEW_SETTINGS_FIELDS, type RawTokenReviewSettings } from '../kubernetes/tokenreview-settings.js';
import { exchangeKeyPrefix, istioMatch, sha256, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT } from './util.js';
import { makeTrustedIssuer, verifyWithIssuers, type TrustedIssuer, type TrustedIssuerSpec } from './verify.js';

// ---------------------------------------------------------------- raw spec shapes

interface RawJwtValidation {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  timeout?: number;
}
interface RawTokenReview extends RawTokenReviewSettings {
  audiences?: string[];
}
interface RawActor {
  header?: string;
  file?: string;
  jwt?: RawJwtValidation;
  tokenReview?: RawTokenReview;
  tokenType?: string;
}
interface RawTarget {
  audience?: string | string[];
  resource?: string | string[];
  scopes?: string[];
  requestedTokenType?: string;
}
interface RawUpstream {
  header?: string;
  prefix?: string;
  forwardActorToken?: boolean;
  actorHeader?: string;
  removeHeaders?: string[];
}
interface RawCache {
  enabled?: boolean;
  maxEntries?: number;
  skew?: number;
  maxTtl?: number;
  negativeTtl?: number;
}
interface RawPolicy {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  match?: { hosts?: string[]; paths?: string[]; backends?: string[] };
  target?: RawTarget;
  mode?: 'Impersonation' | 'Delegation';
  sts?: string;
  subjectTokenType?: string;
  actor?: RawActor;
  delegationPolicy?: string;
  upstream?: RawUpstream;
  cache?: RawCache;
}
interface RawKey {
  kid?: string;
  file?: string;
  algorithm?: SigningAlg;
}
interface RawClient {
  clientId?: string;
  clientSecret?: string;
  clientSecretFile?: string;
  audiences?: string[];
}
interface RawBuiltin {
  issuer?: string;
  keys?: RawKey[];
  activeKeyId?: string;
  tokenLifetime?: number;
  maxDelegationDepth?: number;
  copyClaims?: string[];
  tokenEndpoint?: {
    clients?: RawClient[];
    subjectIssuers?: TrustedIssuerSpec[];
    actorIssuers?: TrustedIssuerSpec[];
    delegationPolicy?: string;
  };
}
interface RawRemote {
  tokenEndpoint?: string;
  clientAuthentication?: {
    method?: ClientAuthMethod;
    clientId?: string;
    clientSecret?: string;
    clientSecretFile?: string;
    privateKeyFile?: string;
    keyId?: string;
    algorithm?: SigningAlg;
  };
  timeout?: number;
  extraParameters?: Record<string, string>;
}
interface RawSts {
  default?: boolean;
  builtin?: RawBuiltin;
  remote?: RawRemote;
}
interface RawDelegation {
  rules?: RawDelegationRule[];
  mayAct?: MayActMode;
}

// ---------------------------------------------------------------- schemas

const HTTP_URL = /^https?:\/\/[^\s/?#]+[^\s]*$/;
const strs = list(str({ nonEmpty: true }));

/** A string or a list of strings (`audience: a` or `audience: [a, b]`). */
function strOrList(): Schema<string | string[]> {
  const one = str({ nonEmpty: true });
  return {
    typeName: 'string or list of strings',
    parse(v, path, ctx) {
      return Array.isArray(v) ? strs.parse(v, path, ctx) : one.parse(v, path, ctx);
    },
  };
}

const jwtValidationSchema = obj<RawJwtValidation>(
  {
    issuer: str({ nonEmpty: true }),
    audiences: strs,
    jwksUri: str({ pattern: HTTP_URL, patternHint: 'must be an http(s) URL' }),
    jwks: str({ nonEmpty: true }),
    timeout: duration({ minMs: 1, maxMs: 60_000 }),
  },
  { required: ['issuer'] },
);
const tokenReviewSchema = obj<RawTokenReview>({ ...TOKENREVIEW_SETTINGS_FIELDS, audiences: strs });
const policySchema = obj<RawPolicy>(
  {
    selector: any(),
    targetRef: any(),
    targetRefs: any(),
    match: obj({ hosts: strs, paths: strs, backends: strs }),
    target: obj<RawTarget>({
      audience: strOrList(),
      resource: strOrList(),
      scopes: strs,
      requestedTokenType: str({ nonEmpty: true }),
    }),
    mode: str({ enum: ['Impersonation', 'Delegation'] }) as Schema<'Impersonation' | 'Delegation'>,
    sts: str({ nonEmpty: true }),
    subjectTokenType: str({ nonEmpty: true }),
    actor: obj<RawActor>({
      header: str({ nonEmpty: true }),
      file: str({ nonEmpty: true }),
      jwt: jwtValidationSchema,
      tokenReview: tokenReviewSchema,
      tokenType: str({ nonEmpty: true }),
    }),
    delegationPolicy: str({ nonEmpty: true }),
    upstream: obj<RawUpstream>({
      header: str({ nonEmpty: true }),
      prefix: str(),
      forwardActorToken: bool(),
      actorHeader: str({ nonEmpty: true }),
      removeHeaders: strs,
    }),
    cache: obj<RawCache>({
      enabled: bool(),
      maxEntries: num({ int: true, min: 1, max: 10_000_000 }),
      skew: duration({ minMs: 0, maxMs: 3_600_000 }),
      maxTtl: duration({ minMs: 1000, maxMs: 86_400_000 }),
      negativeTtl: duration({ minMs: 0, maxMs: 600_000 }),
    }),
  },
  { required: ['target', 'sts'] },
);
const issuerSpecSchema = obj<TrustedIssuerSpec>(
  { issuer: str({ nonEmpty: true }), audiences: strs, jwks: str({ nonEmpty: true }), jwksUri: str({ pattern: HTTP_URL, patternHint: 'must be an http(s) URL' }) },
  { required: ['issuer'] },
);
const stsSchema = obj<RawSts>({
  default: bool(),
  builtin: obj<RawBuiltin>(
    {
      issuer: str({ nonEmpty: true, pattern: /^https?:\/\/\S+$/, patternHint: 'must be an http(s) URL' }),
      keys: list(
        obj<RawKey>(
          { kid: str({ nonEmpty: true }), file: str({ nonEmpty: true }), algorithm: str({ enum: ['ES256', 'RS256'] }) as Schema<SigningAlg> },
          { required: ['kid', 'file', 'algorithm'] },
        ),
        { minItems: 1 },
      ),
      activeKeyId: str({ nonEmpty: true }),
      tokenLifetime: duration({ minMs: 1000, maxMs: 86_400_000 }),
      maxDelegationDepth: num({ int: true, min: 1, max: 32 }),
      copyClaims: strs,
      tokenEndpoint: obj({
        clients: list(
          obj<RawClient>(
            { clientId: str({ nonEmpty: true }), clientSecret: str({ nonEmpty: true }), clientSecretFile: str({ nonEmpty: true }), audiences: strs },
            { required: ['clientId'] },
          ),
          { minItems: 1 },
        ),
        subjectIssuers: list(issuerSpecSchema, { minItems: 1 }),
        actorIssuers: list(issuerSpecSchema),
        delegationPolicy: str({ nonEmpty: true }),
      }),
    },
    { required: ['issuer', 'keys'] },
  ),
  remote: obj<RawRemote>(
    {
      tokenEndpoint: str({ pattern: HTTP_URL, patternHint: 'must be an http(s) URL' }),
      clientAuthentication: obj({
        method: str({ enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] }) as Schema<ClientAuthMethod>,
        clientId: str({ nonEmpty: true }),
        clientSecret: str({ nonEmpty: true }),
        clientSecretFile: str({ nonEmpty: true }),
        privateKeyFile: str({ nonEmpty: true }),
        keyId: str({ nonEmpty: true }),
        algorithm: str({ enum: ['ES256', 'RS256'] }) as Schema<SigningAlg>,
      }),
      timeout: duration({ minMs: 1, maxMs: 60_000 }),
      extraParameters: record(str()),
    },
    { required: ['tokenEndpoint'] },
  ),
});
const delegationSchema = obj<RawDelegation>({
  rules: list(
    obj<RawDelegationRule>({
      actors: list(obj({ issuer: str({ nonEmpty: true }), subject: str({ nonEmpty: true }) }, { required: ['subject'] }), { minItems: 1 }),
      subjects: strs,
      audiences: strs,
    }),
  ),
  mayAct: str({ enum: ['Ignore', 'IfPresent', 'Required'] }) as Schema<MayActMode>,
});

// ---------------------------------------------------------------- compiled shapes

export interface HttpClient {
  readonly clientId: string;
  readonly secret: () => string | undefined;
  readonly audiences: readonly string[];
}

export interface CompiledBuiltinSts {
  readonly kind: 'builtin';
  readonly ref: string;
  /** Identity of the STS for cache keys: changes when its settings or keys change. */
  readonly id: string;
  readonly sts: BuiltinSts;
  readonly isDefault: boolean;
  /** Settings of the HTTP token endpoint; null = only JWKS and discovery are served. */
  readonly tokenEndpoint: {
    readonly clients: readonly HttpClient[];
    readonly subjectIssuers: readonly TrustedIssuer[];
    readonly actorIssuers: readonly TrustedIssuer[];
    readonly delegation: CompiledDelegationPolicy | null;
  } | null;
}
export interface CompiledRemoteSts {
  readonly kind: 'remote';
  readonly ref: string;
  readonly id: string;
  readonly client: RemoteStsClient;
}
export type CompiledSts = CompiledBuiltinSts | CompiledRemoteSts;

export interface MatchSpec {
  readonly hosts: readonly string[] | null;
  readonly paths: readonly string[] | null;
  readonly backends: readonly string[] | null;
}

export interface CompiledPolicy {
  readonly ref: string;
  readonly scope: CompiledScope;
  readonly specificity: number;
  readonly match: MatchSpec;
  readonly mode: 'Impersonation' | 'Delegation';
  readonly sts: CompiledSts;
  readonly audiences: readonly string[];
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly requestedTokenType: string | undefined;
  readonly subjectTokenType: string;
  readonly actor: {
    readonly source: ActorTokenSource;
    readonly validator: ActorValidator;
    readonly tokenType: string;
  } | null;
  readonly delegation: CompiledDelegationPolicy | null;
  readonly upstream: {
    readonly header: string;
    readonly prefix: string;
    readonly forwardActorToken: boolean;
    readonly actorHeader: string;
    readonly removeHeaders: readonly string[];
    /**
     * Precomputed: the headers always removed when the actor token is not
     * forwarded — the actor headers (`actorHeader`, `x-actor-token`, the actor source
     * header), then `removeHeaders` — deduplicated in that order, never the output header.
     */
    readonly strip: readonly string[];
    /** With `forwardActorToken`: the actor headers other than `actorHeader` (removed before it is set). */
    readonly stripForwarding: readonly string[];
  };
  readonly cache: ExchangeCache | null;
  /**
   * The per-policy constant part of the exchange cache key (STS identity, mode, targets,
   * scopes, token types), computed once at compile time; see exchangeCacheKey().
   */
  readonly keyPrefix: string;
}

// ---------------------------------------------------------------- helpers

function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function readFileAt(k: KindDocument, cc: CompileContext, path: Path, p: string): { path: string; text: string } | undefined {
  const abs = cc.resolvePath(k.doc, p);
  try {
    return { path: abs, text: readFileSync(abs, 'utf8') };
  } catch (e) {
    k.v.error(path, `cannot read file ${JSON.stringify(p)}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    return undefined;
  }
}

/** Resolve `name` (policy's namespace, then root namespace) or `namespace/name`. */
function resolveRef<T>(map: ReadonlyMap<string, T>, from: KindDocument, name: string, rootNs: string): T | undefined {
  if (name.includes('/')) return map.get(name);
  return map.get(`${from.namespace}/${name}`) ?? map.get(`${rootNs}/${name}`);
}

function headerNameOk(v: ValidationContext, path: Path, name: string): boolean {
  if (!isValidHeaderName(name) || name.startsWith(':')) {
    v.error(path, `invalid header name ${JSON.stringify(name)} (lower-case token characters)`);
    return false;
  }
  return true;
}

function secretFn(k: KindDocument, cc: CompileContext, base: Path, inline: string | undefined, file: string | undefined): (() => string | undefined) | undefined {
  if (inline !== undefined && file !== undefined) {
    k.v.error([...base, 'clientSecret'], 'set only one of clientSecret or clientSecretFile');
    return undefined;
  }
  if (inline !== undefined) {
    k.v.warn([...base, 'clientSecret'], 'an inline secret is kept in the config file; prefer clientSecretFile');
    return () => inline;
  }
  if (file !== undefined) {
    const abs = cc.resolvePath(k.doc, file);
    if (!existsSync(abs)) {
      k.v.error([...base, 'clientSecretFile'], `cannot read file ${JSON.stringify(file)}`);
      return undefined;
    }
    const src = sharedTokenFile(cc.runtime, abs);
    return () => readTokenFile(src);
  }
  return undefined;
}

// ---------------------------------------------------------------- compile

export interface CompiledExchange {
  readonly policies: readonly CompiledPolicy[];
  readonly stss: ReadonlyMap<string, CompiledSts>;
  readonly httpSts: CompiledBuiltinSts | null;
}

export interface CompileExchangeInput {
  readonly tokenExchangePolicies: readonly KindDocument[];
  readonly securityTokenServices: readonly KindDocument[];
  readonly delegationPolicies: readonly KindDocument[];
  /** The agreed JWT validator factory from src/authn (null until it exists). */
  readonly jwtVerifier?: (opts: { issuer: string; audiences?: readonly string[]; jwksUri?: string; jwks?: string; timeoutMs?: number }) => JwtVerifyFn;
}

export function compileExchangeDocs(input: CompileExchangeInput, cc: CompileContext): CompiledExchange {
  const rootNs = cc.settings.rootNamespace;

  // DelegationPolicy
  const delegations = new Map<string, CompiledDelegationPolicy>();
  for (const k of input.delegationPolicies) {
    const s = delegationSchema.parse(k.spec ?? {}, ['spec'], k.v);
    if (!s) continue;
    delegations.set(k.ref, Object.freeze({ ref: k.ref, rules: compileDelegationRules(s.rules ?? []), mayAct: s.mayAct ?? 'Ignore' }));
  }

  // SecurityTokenService
  const stss = new Map<string, CompiledSts>();
  const builtins: CompiledBuiltinSts[] = [];
  for (const k of input.securityTokenServices) {
    const s = stsSchema.parse(k.spec ?? {}, ['spec'], k.v);
    if (!s) continue;
    if ((s.builtin ? 1 : 0) + (s.remote ? 1 : 0) !== 1) {
      k.v.error(['spec'], 'exactly one of builtin or remote must be set');
      continue;
    }
    if (s.builtin) {
      const c = compileBuiltin(k, s.builtin, s.default === true, cc, delegations, rootNs);
      if (c) {
        stss.set(k.ref, c);
        builtins.push(c);
      }
    } else {
      if (s.default) k.v.error(['spec', 'default'], 'only a builtin STS can be the default served over HTTP');
      const c = compileRemote(k, s.remote!, cc);
      if (c) stss.set(k.ref, c);
    }
  }
  let httpSts: CompiledBuiltinSts | null = null;
  const marked = builtins.filter((b) => b.isDefault);
  if (marked.length > 1) {
    const second = input.securityTokenServices.find((d) => d.ref === marked[1]!.ref);
    second?.v.error(['spec', 'default'], `only one SecurityTokenService may be the default (also ${marked[0]!.ref})`);
  } else if (marked.length === 1) httpSts = marked[0]!;
  else if (builtins.length === 1) httpSts = builtins[0]!;
  else if (builtins.length > 1) {
    const d = input.securityTokenServices.find((x) => x.ref === builtins[1]!.ref);
    d?.v.warn(['spec', 'default'], 'several builtin STSs and none has default: true; none is served over HTTP');
  }

  // TokenExchangePolicy
  const policies: CompiledPolicy[] = [];
  for (const k of input.tokenExchangePolicies) {
    const p = compilePolicy(k, cc, stss, delegations, rootNs, input.jwtVerifier);
    if (p) policies.push(p);
  }
  // most specific scope first, ties by namespace/name.
  policies.sort((a, b) => b.specificity - a.specificity || (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0));
  warnTies(policies, input.tokenExchangePolicies);
  return { policies: Object.freeze(policies), stss, httpSts };
}

function disjoint(a: readonly string[] | null, b: readonly string[] | null, ci = false): boolean {
  if (!a || !b) return false;
  const exact = (l: readonly string[]) => l.every((x) => !x.includes('*'));
  if (!exact(a) || !exact(b)) return false;
  const sb = new Set(b.map((x) => (ci ? x.toLowerCase() : x)));
  return !a.some((x) => sb.has(ci ? x.toLowerCase() : x));
}

function mayOverlap(a: CompiledPolicy, b: CompiledPolicy): boolean {
  if (a.specificity !== b.specificity) return false;
  if (!a.scope.isRoot && !b.scope.isRoot && a.scope.namespace !== b.scope.namespace) return false;
  if (disjoint(a.match.backends, b.match.backends) || disjoint(a.match.hosts, b.match.hosts, true) || disjoint(a.match.paths, b.match.paths)) return false;
  // Selection is strict (scopeAppliesStrict): a selector applies only to a request whose
  // labels match, and targetRefs only to a request naming that gateway/service. So policies
  // with conflicting labels, or whose targetRefs name different gateways (or different
  // services) only, never both apply to one request.
  if (a.scope.matchLabels && b.scope.matchLabels) {
    for (const key of Object.keys(a.scope.matchLabels)) {
      const o = b.scope.matchLabels[key];
      if (o !== undefined && o !== a.scope.matchLabels[key]) return false;
    }
  }
  if (a.scope.targetRefs && b.scope.targetRefs) {
    const gw = (t: { kind: string }) => t.kind === 'Gateway' || t.kind === 'GatewayClass';
    const together = a.scope.targetRefs.some((x) => b.scope.targetRefs!.some((y) => gw(x) !== gw(y) || x.name === y.name));
    if (!together) return false;
  }
  return true;
}

function warnTies(sorted: readonly CompiledPolicy[], docs: readonly KindDocument[]): void {
  for (let i = 0; i < sorted.length; i++) {
    for (let j = i + 1; j < sorted.length; j++) {
      if (mayOverlap(sorted[i]!, sorted[j]!)) {
        const d = docs.find((x) => x.ref === sorted[j]!.ref);
        d?.v.warn(
          ['metadata', 'name'],
          `TokenExchangePolicy ${sorted[i]!.ref} has the same specificity and may match the same requests; it wins (ties are broken by namespace/name)`,
        );
        break;
      }
    }
  }
}

function compileBuiltin(
  k: KindDocument,
  b: RawBuiltin,
  isDefault: boolean,
  cc: CompileContext,
  delegations: ReadonlyMap<string, CompiledDelegationPolicy>,
  rootNs: string,
): CompiledBuiltinSts | undefined {
  const keys: LoadedKey[] = [];
  const material: string[] = [];
  const kids = new Set<string>();
  (b.keys ?? []).forEach((rk, i) => {
    const path = ['spec', 'builtin', 'keys', i];
    if (kids.has(rk.kid!)) {
      k.v.error([...path, 'kid'], `duplicate kid ${JSON.stringify(rk.kid)}`);
      return;
    }
    kids.add(rk.kid!);
    const f = readFileAt(k, cc, [...path, 'file'], rk.file!);
    if (!f) return;
    const r = loadKey(f.text, rk.kid!, rk.algorithm!);
    if (!r.ok) {
      k.v.error([...path, 'file'], r.message);
      return;
    }
    keys.push(r.key);
    material.push(f.text);
  });
  if (keys.length !== (b.keys ?? []).length) return undefined;
  const activeKid = b.activeKeyId ?? keys[0]!.kid;
  const active = keys.find((x) => x.kid === activeKid);
  if (!active) {
    k.v.error(['spec', 'builtin', 'activeKeyId'], `no key with kid ${JSON.stringify(activeKid)}`);
    return undefined;
  }
  if (!active.privateKey) {
    k.v.error(b.activeKeyId ? ['spec', 'builtin', 'activeKeyId'] : ['spec', 'builtin', 'keys', 0, 'file'], `the active key ${JSON.stringify(activeKid)} has no private key (public keys can only be published for rotation)`);
    return undefined;
  }
  let tokenEndpoint: CompiledBuiltinSts['tokenEndpoint'] = null;
  const te = b.tokenEndpoint;
  const stsOpts = {
    ref: k.ref,
    issuer: b.issuer!,
    keys,
    activeKid,
    tokenLifetimeSec: Math.floor((b.tokenLifetime ?? 300_000) / 1000),
    maxDelegationDepth: b.maxDelegationDepth ?? 4,
    copyClaims: b.copyClaims ?? [],
  };
  const id = sha256('builtin', k.ref, JSON.stringify({ ...b, tokenEndpoint: undefined }), ...material);
  const sts = cc.runtime.shared.get(`exchange:builtin:${id}`, () => new BuiltinSts(stsOpts));
  if (te) {
    const base = ['spec', 'builtin', 'tokenEndpoint'];
    if (!te.clients) k.v.error([...base, 'clients'], 'required field is missing (the token endpoint authenticates its clients)');
    if (!te.subjectIssuers) k.v.error([...base, 'subjectIssuers'], 'required field is missing (which issuers\' subject tokens are accepted)');
    const clients: HttpClient[] = [];
    (te.clients ?? []).forEach((c, i) => {
      // No default: an unrestricted client could mint tokens for every backend (and, with
      // this STS's own issuer among subjectIssuers, re-exchange a token meant for one
      // backend into another's audience). "*" must be spelled out.
      if (!c.audiences) k.v.error([...base, 'clients', i, 'audiences'], 'required field is missing (the audience/resource globs this client may request tokens for; there is no default, so that a client cannot mint tokens for every backend — use ["*"] to allow any explicitly)');
      else if (c.audiences.length === 0) k.v.error([...base, 'clients', i, 'audiences'], 'must list at least one audience/resource glob (with none the client can request nothing)');
      const s = secretFn(k, cc, [...base, 'clients', i], c.clientSecret, c.clientSecretFile);
      if (!s) {
        if (c.clientSecret === undefined && c.clientSecretFile === undefined) k.v.error([...base, 'clients', i], 'one of clientSecret or clientSecretFile is required');
        return;
      }
      clients.push({ clientId: c.clientId!, secret: s, audiences: c.audiences ?? [] });
    });
    const own = { issuer: sts.issuer, jwks: sts.jwks };
    const issuers = (specs: TrustedIssuerSpec[] | undefined, field: string): TrustedIssuer[] => {
      const out: TrustedIssuer[] = [];
      (specs ?? []).forEach((sp, i) => {
        if (sp.jwks && sp.jwksUri) k.v.error([...base, field, i, 'jwks'], 'set only one of jwks or jwksUri');
        if (!sp.jwks && !sp.jwksUri && sp.issuer !== sts.issuer) {
          k.v.error([...base, field, i], 'one of jwks or jwksUri is required (only this STS\'s own issuer may omit both)');
          return;
        }
        try {
          out.push(cc.runtime.shared.get(`exchange:issuer:${sha256(JSON.stringify(sp), id)}`, () => makeTrustedIssuer(sp, cc.runtime, own)));
        } catch {
          k.v.error([...base, field, i, 'jwks'], 'cannot parse the JWKS');
        }
      });
      return out;
    };
    const subjectIssuers = issuers(te.subjectIssuers, 'subjectIssuers');
    const actorIssuers = issuers(te.actorIssuers, 'actorIssuers');
    let delegation: CompiledDelegationPolicy | null = null;
    if (te.delegationPolicy) {
      delegation = resolveRef(delegations, k, te.delegationPolicy, rootNs) ?? null;
      if (!delegation) k.v.error([...base, 'delegationPolicy'], `DelegationPolicy ${JSON.stringify(te.delegationPolicy)} not found`);
    } else if (actorIssuers.length > 0) {
      k.v.error([...base, 'delegationPolicy'], 'required when actorIssuers is set (who may act for whom)');
    }
    tokenEndpoint = { clients, subjectIssuers, actorIssuers, delegation };
  }
  return { kind: 'builtin', ref: k.ref, id, sts, isDefault, tokenEndpoint };
}

function compileRemote(k: KindDocument, r: RawRemote, cc: CompileContext): CompiledRemoteSts | undefined {
  const base = ['spec', 'remote', 'clientAuthentication'];
  const ca = r.clientAuthentication ?? {};
  const method = ca.method ?? (ca.privateKeyFile ? 'private_key_jwt' : ca.clientId ? 'client_secret_basic' : 'none');
  if (method !== 'none' && !ca.clientId) k.v.error([...base, 'clientId'], `required for ${method}`);
  let clientSecret: (() => string | undefined) | undefined;
  let assertionKey: { key: import('node:crypto').KeyObject; kid: string; alg: SigningAlg } | undefined;
  let keyMaterial = '';
  if (method === 'client_secret_basic' || method === 'client_secret_post') {
    clientSecret = secretFn(k, cc, base, ca.clientSecret, ca.clientSecretFile);
    if (!clientSecret && ca.clientSecret === undefined && ca.clientSecretFile === undefined) k.v.error([...base, 'clientSecretFile'], `one of clientSecret or clientSecretFile is required for ${method}`);
  } else if (ca.clientSecret !== undefined || ca.clientSecretFile !== undefined) {
    k.v.error([...base, ca.clientSecret !== undefined ? 'clientSecret' : 'clientSecretFile'], `not used with method ${method}`);
  }
  if (method === 'private_key_jwt') {
    if (!ca.privateKeyFile) k.v.error([...base, 'privateKeyFile'], 'required for private_key_jwt');
    if (!ca.keyId) k.v.error([...base, 'keyId'], 'required for private_key_jwt');
    if (ca.privateKeyFile && ca.keyId) {
      const f = readFileAt(k, cc, [...base, 'privateKeyFile'], ca.privateKeyFile);
      if (f) {
        const lk = loadKey(f.text, ca.keyId, ca.algorithm ?? 'ES256');
        if (!lk.ok) k.v.error([...base, 'privateKeyFile'], lk.message);
        else if (!lk.key.privateKey) k.v.error([...base, 'privateKeyFile'], 'must hold a private key');
        else {
          keyMaterial = f.text;
          assertionKey = { key: lk.key.privateKey, kid: ca.keyId, alg: ca.algorithm ?? 'ES256' };
        }
      }
    }
  } else if (ca.privateKeyFile !== undefined) k.v.error([...base, 'privateKeyFile'], `not used with method ${method}`);
  if (k.v.hasErrors) return undefined;
  for (const p of ['grant_type', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'client_secret', 'client_assertion']) {
    if (r.extraParameters && p in r.extraParameters) {
      k.v.error(['spec', 'remote', 'extraParameters', p], 'this parameter is set by the exchange itself');
      return undefined;
    }
  }
  const opts = {
    ref: k.ref,
    tokenEndpoint: r.tokenEndpoint!,
    authMethod: method,
    clientId: ca.clientId ?? '',
    ...(clientSecret ? { clientSecret: () => clientSecret!() ?? '' } : {}),
    ...(assertionKey ? { assertionKey } : {}),
    timeoutMs: r.timeout ?? 750,
    extraParameters: r.extraParameters ?? {},
  };
  const id = sha256('remote', k.ref, JSON.stringify(r), keyMaterial);
  const client = cc.runtime.shared.get(`exchange:remote:${id}`, () => new RemoteStsClient(opts, cc.runtime));
  return { kind: 'remote', ref: k.ref, id, client };
}

function compilePolicy(
  k: KindDocument,
  cc: CompileContext,
  stss: ReadonlyMap<string, CompiledSts>,
  delegations: ReadonlyMap<string, CompiledDelegationPolicy>,
  rootNs: string,
  jwtVerifier: CompileExchangeInput['jwtVerifier'],
): CompiledPolicy | undefined {
  const spec = (k.spec ?? {}) as Record<string, unknown>;
  const s = policySchema.parse(spec, ['spec'], k.v);
  if (!s) return undefined;
  const scope = parseScope(k, spec, cc.settings);
  const v = k.v;
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

  // actor
  let actor: CompiledPolicy['actor'] = null;
  const a = s.actor;
  if (mode === 'Delegation' && !a) v.error(['spec', 'actor'], 'required when mode is Delegation (where the actor token comes from and how it is validated)');
  if (a) {
    if (mode === 'Impersonation') v.warn(['spec', 'actor'], 'ignored when mode is Impersonation');
    if ((a.header ? 1 : 0) + (a.file ? 1 : 0) !== 1) v.error(['spec', 'actor'], 'exactly one of header or file must be set');
    if ((a.jwt ? 1 : 0) + (a.tokenReview ? 1 : 0) !== 1) v.error(['spec', 'actor'], 'exactly one of jwt or tokenReview must be set (the actor token is always validated)');
    let source: ActorTokenSource | undefined;
    if (a.header) {
      const h = a.header.toLowerCase();
      if (headerNameOk(v, ['spec', 'actor', 'header'], h)) source = { header: h };
    } else if (a.file) {
      const abs = cc.resolvePath(k.doc, a.file);
      if (!existsSync(abs)) v.warn(['spec', 'actor', 'file'], `file ${JSON.stringify(a.file)} does not exist yet; delegation is refused (401) until it does`);
      source = { file: sharedTokenFile(cc.runtime, abs) };
    }
    let validator: ActorValidator | undefined;
    if (a.jwt) {
      const j = a.jwt;
      if (j.jwks && j.jwksUri) v.error(['spec', 'actor', 'jwt', 'jwks'], 'set only one of jwks or jwksUri');
      if (!j.audiences || j.audiences.length === 0) v.warn(['spec', 'actor', 'jwt', 'audiences'], 'without audiences any token of this issuer (e.g. one meant for another service) is admitted as the actor');
      if (j.jwks) {
        try {
          JSON.parse(j.jwks);
        } catch {
          v.error(['spec', 'actor', 'jwt', 'jwks'], 'must be a JSON Web Key Set');
        }
      }
      if (!v.hasErrors) {
        const opts = {
          issuer: j.issuer!,
          ...(j.audiences ? { audiences: j.audiences } : {}),
          ...(j.jwksUri ? { jwksUri: j.jwksUri } : {}),
          ...(j.jwks ? { jwks: j.jwks } : {}),
          ...(j.timeout ? { timeoutMs: j.timeout } : {}),
        };
        if (jwtVerifier) {
          validator = jwtActorValidator(k.ref, jwtVerifier(opts));
        } else {
          if (!j.jwks && !j.jwksUri) v.error(['spec', 'actor', 'jwt', 'jwksUri'], 'one of jwks or jwksUri is required');
          else {
            const t = cc.runtime.shared.get(`exchange:issuer:${sha256(JSON.stringify(opts))}`, () => makeTrustedIssuer(opts, cc.runtime));
            validator = jwtActorValidator(k.ref, (tok) => verifyWithIssuers(tok, [t], cc.runtime).then((r) => (r.ok ? r : { ok: false, reason: 'ERR_ACTOR_TOKEN_INVALID', message: r.message })));
          }
        }
      }
    } else if (a.tokenReview) {
      const t = a.tokenReview;
      if (!t.audiences || t.audiences.length === 0) v.warn(['spec', 'actor', 'tokenReview', 'audiences'], 'without audiences any token the API server accepts (e.g. one meant for another service) is admitted; set the audience the agent requests its projected token for');
      const site = { v, path: ['spec', 'actor', 'tokenReview'], resolvePath: (p: string) => cc.resolvePath(k.doc, p) };
      const client = compileTokenReviewSettings(t, t.audiences ?? [], site, cc.runtime);
      if (client) validator = tokenReviewActorValidator(k.ref, client);
    }
    if (source && validator) actor = { source, validator, tokenType: a.tokenType ?? TOKEN_TYPE_JWT };
  }

  // delegation policy
  let delegation: CompiledDelegationPolicy | null = null;
  if (s.delegationPolicy) {
    if (mode !== 'Delegation') v.warn(['spec', 'delegationPolicy'], 'ignored when mode is Impersonation');
    delegation = resolveRef(delegations, k, s.delegationPolicy, rootNs) ?? null;
    if (!delegation) v.error(['spec', 'delegationPolicy'], `DelegationPolicy ${JSON.stringify(s.delegationPolicy)} not found`);
  } else if (mode === 'Delegation') {
    v.error(['spec', 'delegationPolicy'], 'required when mode is Delegation (which actors may act for which subjects and audiences)');
  }

  // upstream
  const u = s.upstream ?? {};
  const header = (u.header ?? 'authorization').toLowerCase();
  headerNameOk(v, ['spec', 'upstream', 'header'], header);
  const prefix = u.prefix ?? (header === 'authorization' ? 'Bearer ' : '');
  if (/[\r\n\0]/.test(prefix)) v.error(['spec', 'upstream', 'prefix'], 'must not contain CR, LF or NUL');
  const actorHeader = (u.actorHeader ?? 'x-actor-token').toLowerCase();
  headerNameOk(v, ['spec', 'upstream', 'actorHeader'], actorHeader);
  if (u.forwardActorToken) {
    if (mode !== 'Delegation') v.error(['spec', 'upstream', 'forwardActorToken'], 'only meaningful with mode Delegation');
    v.warn(['spec', 'upstream', 'forwardActorToken'], 'forwards a credential upstream, contrary to the MCP "no token passthrough" rule; only for backends that perform the exchange themselves');
    if (actorHeader === header) v.error(['spec', 'upstream', 'actorHeader'], 'must differ from upstream.header');
  }
  const removeHeaders: string[] = [];
  (u.removeHeaders ?? []).forEach((h, i) => {
    const lh = h.toLowerCase();
    if (headerNameOk(v, ['spec', 'upstream', 'removeHeaders', i], lh)) {
      if (lh === header) v.error(['spec', 'upstream', 'removeHeaders', i], 'must not list the output header (it is set with overwrite)');
      removeHeaders.push(lh);
    }
  });

  // match
  const m = s.match ?? {};
  const match: MatchSpec = {
    hosts: m.hosts && m.hosts.length > 0 ? m.hosts.map((h) => h.toLowerCase()) : null,
    paths: m.paths && m.paths.length > 0 ? m.paths : null,
    backends: m.backends && m.backends.length > 0 ? m.backends : null,
  };
  const specificity = Math.max(scopeSpecificity(scope), match.backends ? 2 : 0);

  // cache
  const c = s.cache ?? {};
  let cache: ExchangeCache | null = null;
  if (c.enabled !== false) {
    const copts: ExchangeCacheOptions = {
      maxEntries: c.maxEntries ?? 10_000,
      skewMs: c.skew ?? 30_000,
      maxTtlMs: c.maxTtl ?? 300_000,
      negativeTtlMs: c.negativeTtl ?? 5_000,
    };
    cache = cc.runtime.shared.get(`exchange:cache:${k.ref}:${JSON.stringify(copts)}`, () => new ExchangeCache(copts, cc.runtime));
  }

  if (v.hasErrors || !sts) return undefined;
  if (mode === 'Delegation' && (!actor || !delegation)) return undefined;
  const scopes = s.target!.scopes ?? [];
  const requestedTokenType = s.target!.requestedTokenType;
  const subjectTokenType = s.subjectTokenType ?? TOKEN_TYPE_ACCESS_TOKEN;
  const effActor = mode === 'Delegation' ? actor : null;
  // Upstream header lists that do not depend on the request (applyUpstream in index.ts).
  const actorHeaders = [...new Set([actorHeader, 'x-actor-token', ...(effActor?.source.header ? [effActor.source.header] : [])])];
  const strip = [...new Set([...actorHeaders, ...removeHeaders])].filter((h) => h !== header);
  const stripForwarding = actorHeaders.filter((h) => h !== actorHeader && h !== header);
  return Object.freeze({
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
    actor: effActor,
    delegation: mode === 'Delegation' ? delegation : null,
    upstream: { header, prefix, forwardActorToken: u.forwardActorToken === true, actorHeader, removeHeaders, strip, stripForwarding },
    cache,
    keyPrefix: exchangeKeyPrefix(sts.id, mode, audiences, resources, scopes, requestedTokenType, subjectTokenType),
  });
}

/** Does the policy's request match (hosts / paths / backends) hold? Scope is checked separately. */
export function matchApplies(m: MatchSpec, host: string, path: string, backend: string): boolean {
  if (m.backends && !m.backends.some((b) => istioMatch(b, backend))) return false;
  if (m.hosts) {
    const h = host.toLowerCase();
    if (!m.hosts.some((p) => istioMatch(p, h))) return false;
  }
  if (m.paths && !m.paths.some((p) => istioMatch(p, path))) return false;
  return true;
}
