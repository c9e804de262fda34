/**
 * The `CredentialValidator` kind (obo-authz.dev/v1alpha1): one document = one member of a
 * workload's credential chain (chain.ts), scoped like Istio policies (root namespace /
 * own namespace, selector or targetRefs), optionally only for some hosts/paths (`match`),
 * placed in the chain by `order` relative to the RequestAuthentication jwtRules (order 0),
 * and optionally marking authentication `required`. docs/configuration/credentials.md
 * documents every field.
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { any, bool, duration, list, num, obj, record, str, type Schema } from '../config/schema.js';
import { parseScope, ScopedIndex, type CompiledScope } from '../config/scope.js';
import { createTokenReviewClient, inClusterDefaults, type TokenReviewClient } from '../kubernetes/tokenreview.js';
import { ApiKeyMember, parseApiKeyFiles } from './api-keys.js';
import type { CredentialValidatorMember } from './chain.js';
import { claimHeaderName, DEFAULT_CLAIM_PREFIX, toLocations, type ClaimForwarding, type CredentialLocation, type RawHeaderLocation } from './credential-common.js';
import { EdgeMember, parseBlocks, principalMatcher } from './edge.js';
import { createJwtValidator } from '../jwt/jwt-validator.js';
import { KubernetesMember } from './kubernetes-sa.js';
import { DEFAULT_RELOAD_INTERVAL_MS, MAX_RELOAD_INTERVAL_MS, sharedSecretFile } from './secret-file.js';
import { compileRoute, routeSchema, type RawRoute, type RouteMatch } from './route.js';
import { parseSharedTokenFile, SharedTokenMember } from './shared-token.js';

export const VALIDATOR_TYPES = ['JWT', 'APIKey', 'SharedToken', 'KubernetesServiceAccount', 'EdgeHeaders'] as const;
export type ValidatorType = (typeof VALIDATOR_TYPES)[number];

/** Order of the jwtRules member unless a `type: JWT` document says otherwise. */
export const JWT_DEFAULT_ORDER = 0;
export const VALIDATOR_DEFAULT_ORDER = 100;

interface RawForwardClaims {
  prefix?: string;
  claims?: string[];
}
interface RawApiKey {
  file?: string;
  fromHeaders?: RawHeaderLocation[];
  reloadInterval?: number;
  forwardKey?: boolean;
}
interface RawSharedToken {
  file?: string;
  fromHeaders?: RawHeaderLocation[];
  reloadInterval?: number;
  forwardToken?: boolean;
  subject?: string;
  role?: string;
  groups?: string[];
  scopes?: string[];
}
interface RawTokenReview {
  apiServer?: string;
  caFile?: string;
  tokenFile?: string;
  timeout?: number;
  cacheTtl?: number;
}
interface RawKubernetes {
  mode?: string;
  issuer?: string;
  jwksUri?: string;
  audiences?: string[];
  fromHeaders?: RawHeaderLocation[];
  forwardToken?: boolean;
  tokenReview?: RawTokenReview;
}
interface RawEdge {
  trustedSources?: { principals?: string[]; ipBlocks?: string[] };
  headers?: { subject?: string; issuer?: string; role?: string; groups?: string; email?: string };
  claims?: Record<string, string>;
  groupsSeparator?: string;
}
interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  type?: string;
  order?: number;
  match?: RawRoute;
  required?: unknown;
  issuer?: string;
  forwardClaims?: RawForwardClaims;
  apiKey?: RawApiKey;
  sharedToken?: RawSharedToken;
  kubernetes?: RawKubernetes;
  edge?: RawEdge;
}

const HEADER_NAME = /^[-_A-Za-z0-9]+$/;
const headerName = () => str({ nonEmpty: true, pattern: HEADER_NAME, patternHint: 'must be a header name ([-_A-Za-z0-9]+)' });
const locationsSchema = list(obj<RawHeaderLocation>({ name: headerName(), prefix: str() }, { required: ['name'] }), { minItems: 1 });
const reload = () => duration({ minMs: 100, maxMs: MAX_RELOAD_INTERVAL_MS });

/** `required: true | false | {hosts, paths}`. */
const requiredSchema: Schema<boolean | RawRoute> = {
  typeName: 'boolean or mapping',
  parse(v, path, ctx) {
    if (typeof v === 'boolean') return v;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const r = routeSchema.parse(v, path, ctx);
      if (r && !r.hosts && !r.paths) {
        ctx.error(path, 'must name hosts and/or paths (use `required: true` for every request)');
        return undefined;
      }
      return r;
    }
    ctx.error(path, 'expected true, false or a mapping with hosts and/or paths');
    return undefined;
  },
};

const specSchema: Schema<RawSpec> = obj<RawSpec>(
  {
    selector: any(),
    targetRef: any(),
    targetRefs: any(),
    type: str({ enum: VALIDATOR_TYPES }),
    order: num({ int: true, min: -1000, max: 1000 }),
    match: routeSchema,
    required: requiredSchema as Schema<unknown>,
    issuer: str({ nonEmpty: true }),
    forwardClaims: obj<RawForwardClaims>({ prefix: headerName(), claims: list(str({ nonEmpty: true }), { minItems: 1 }) }, { required: ['claims'] }),
    apiKey: obj<RawApiKey>({ file: str({ nonEmpty: true }), fromHeaders: locationsSchema, reloadInterval: reload(), forwardKey: bool() }, { required: ['file'] }),
    sharedToken: obj<RawSharedToken>(
      {
        file: str({ nonEmpty: true }),
        fromHeaders: locationsSchema,
        reloadInterval: reload(),
        forwardToken: bool(),
        subject: str({ nonEmpty: true, pattern: /^[^/\s]+$/, patternHint: 'must not contain "/" or spaces' }),
        role: str({ nonEmpty: true }),
        groups: list(str({ nonEmpty: true })),
        scopes: list(str({ nonEmpty: true, pattern: /^\S+$/, patternHint: 'a scope has no spaces' })),
      },
      { required: ['file'] },
    ),
    kubernetes: obj<RawKubernetes>({
      mode: str({ enum: ['JWKS', 'TokenReview'] }),
      issuer: str({ nonEmpty: true }),
      jwksUri: str({ nonEmpty: true }),
      audiences: list(str({ nonEmpty: true })),
      fromHeaders: locationsSchema,
      forwardToken: bool(),
      tokenReview: obj<RawTokenReview>({
        apiServer: str({ nonEmpty: true }),
        caFile: str({ nonEmpty: true }),
        tokenFile: str({ nonEmpty: true }),
        timeout: duration({ minMs: 10, maxMs: 60_000 }),
        cacheTtl: duration({ minMs: 0, maxMs: 300_000 }),
      }),
    }),
    edge: obj<RawEdge>(
      {
        trustedSources: obj({ principals: list(str({ nonEmpty: true })), ipBlocks: list(str({ nonEmpty: true })) }),
        headers: obj(
          { subject: headerName(), issuer: headerName(), role: headerName(), groups: headerName(), email: headerName() },
          { required: ['subject'] },
        ),
        claims: record(headerName()),
        groupsSeparator: str({ nonEmpty: true }),
      },
      { required: ['trustedSources', 'headers'] },
    ),
  },
  { required: ['type'] },
);

const BLOCK_FOR: Record<ValidatorType, keyof RawSpec | null> = {
  JWT: null,
  APIKey: 'apiKey',
  SharedToken: 'sharedToken',
  KubernetesServiceAccount: 'kubernetes',
  EdgeHeaders: 'edge',
};

export interface CompiledValidator {
  /** `namespace/name`. */
  readonly ref: string;
  readonly type: ValidatorType;
  readonly order: number;
  readonly scope: CompiledScope;
  /** When the validator takes part (null = every request of the workload). */
  readonly match: RouteMatch | null;
  /** `true` = wherever it takes part; a RouteMatch = for those requests; null = not required. */
  readonly required: RouteMatch | true | null;
  /** null for `type: JWT` (the jwtRules member itself comes from RequestAuthentication). */
  readonly member: CredentialValidatorMember | null;
  /** Headers where this member takes non-JWT-shaped values (APIKey, SharedToken). */
  readonly opaqueHeaders: readonly string[];
  /** Takes JWT-shaped values (KubernetesServiceAccount). */
  readonly takesJwt: boolean;
  readonly locations: readonly CredentialLocation[];
}

function defaultIssuer(type: ValidatorType, k: KindDocument): string {
  const host = type === 'APIKey' ? 'apikey' : type === 'SharedToken' ? 'sharedtoken' : 'edge';
  return `${host}.obo-authz.dev/${k.namespace}/${k.name}`;
}

function compileForwarding(k: KindDocument, f: RawForwardClaims | undefined): ClaimForwarding | null {
  if (!f) return null;
  const prefix = (f.prefix ?? DEFAULT_CLAIM_PREFIX).toLowerCase();
  const claims = (f.claims ?? []).map((claim) => ({ claim, header: claimHeaderName(prefix, claim) }));
  const seen = new Set<string>();
  claims.forEach((c, i) => {
    if (seen.has(c.header)) k.v.error(['spec', 'forwardClaims', 'claims', i], `claim ${JSON.stringify(c.claim)} maps to header ${c.header} like an earlier claim`);
    seen.add(c.header);
  });
  return Object.freeze({ prefix, claims: Object.freeze(claims) });
}

function checkLocations(k: KindDocument, base: (string | number)[], raw: readonly RawHeaderLocation[] | undefined): void {
  const seen = new Set<string>();
  (raw ?? []).forEach((h, i) => {
    const n = (h.name ?? '').toLowerCase();
    if (seen.has(n)) k.v.error([...base, 'fromHeaders', i, 'name'], `header ${JSON.stringify(h.name)} is listed twice`);
    seen.add(n);
  });
}

/** Compile one CredentialValidator; reports issues on `k.v`; undefined when invalid. */
export function compileCredentialValidator(k: KindDocument, cc: CompileContext): CompiledValidator | undefined {
  const specRaw = k.spec ?? {};
  if (specRaw === null || typeof specRaw !== 'object' || Array.isArray(specRaw)) {
    k.v.error(['spec'], 'expected a mapping');
    return undefined;
  }
  const before = k.v.issues.length;
  const spec = specSchema.parse(specRaw, ['spec'], k.v);
  const scope = parseScope(k, specRaw as Record<string, unknown>, cc.settings);
  if (!spec || !spec.type) return undefined;
  const type = spec.type as ValidatorType;
  const block = BLOCK_FOR[type];
  for (const t of VALIDATOR_TYPES) {
    const b = BLOCK_FOR[t];
    if (b && b !== block && spec[b] !== undefined) k.v.errorAtKey(['spec', b], `${b} is only allowed with type: ${t} (this validator is type: ${type})`);
  }
  if (block && spec[block] === undefined) k.v.error(['spec', 'type'], `type: ${type} needs a spec.${block} block`);
  if (type === 'JWT') {
    if (spec.match) k.v.error(['spec', 'match'], 'type: JWT takes no match: the jwtRules apply as their RequestAuthentication says');
    if (spec.issuer) k.v.error(['spec', 'issuer'], 'type: JWT takes no issuer: it comes from the token');
    if (spec.forwardClaims) k.v.error(['spec', 'forwardClaims'], 'type: JWT takes no forwardClaims: use outputClaimToHeaders in the RequestAuthentication');
  }
  if (type === 'KubernetesServiceAccount' && spec.issuer) k.v.error(['spec', 'issuer'], 'the issuer of a service-account token is its `iss`: set spec.kubernetes.issuer');
  const forwardClaims = compileForwarding(k, spec.forwardClaims);
  if (k.v.issues.slice(before).some((i) => i.severity === 'error')) return undefined;

  const issuer = spec.issuer ?? (type === 'JWT' || type === 'KubernetesServiceAccount' ? '' : defaultIssuer(type, k));
  if (issuer.endsWith('/')) k.v.error(['spec', 'issuer'], 'must not end with "/" (the principal is <issuer>/<subject>)');
  const ref = k.ref;
  let member: CredentialValidatorMember | null = null;
  let locations: readonly CredentialLocation[] = [];
  let opaqueHeaders: string[] = [];
  let takesJwt = false;
  const p = (...rest: (string | number)[]) => ['spec', block!, ...rest];

  if (type === 'APIKey') {
    const a = spec.apiKey!;
    checkLocations(k, p(), a.fromHeaders);
    locations = toLocations(a.fromHeaders);
    opaqueHeaders = locations.map((l) => l.name);
    const path = cc.resolvePath(k.doc, a.file!);
    const { file, error } = sharedSecretFile(cc.runtime, 'api-keys', path, a.reloadInterval ?? DEFAULT_RELOAD_INTERVAL_MS, parseApiKeyFiles);
    if (error) k.v.error(p('file'), error);
    member = new ApiKeyMember({ ref, issuer, locations, file, forwardKey: a.forwardKey ?? false, forwardClaims });
  } else if (type === 'SharedToken') {
    const s = spec.sharedToken!;
    checkLocations(k, p(), s.fromHeaders);
    locations = toLocations(s.fromHeaders);
    opaqueHeaders = locations.map((l) => l.name);
    const path = cc.resolvePath(k.doc, s.file!);
    const { file, error } = sharedSecretFile(cc.runtime, 'shared-token', path, s.reloadInterval ?? DEFAULT_RELOAD_INTERVAL_MS, parseSharedTokenFile);
    if (error) k.v.error(p('file'), error);
    const claims: Record<string, unknown> = {};
    if (s.role) claims['role'] = s.role;
    if (s.groups?.length) claims['groups'] = [...s.groups];
    if (s.scopes?.length) claims['scope'] = [...s.scopes];
    member = new SharedTokenMember({ ref, issuer, subject: s.subject ?? k.name, claims, locations, file, forwardToken: s.forwardToken ?? false, forwardClaims });
  } else if (type === 'KubernetesServiceAccount') {
    const s = spec.kubernetes!;
    const mode = s.mode ?? 'JWKS';
    checkLocations(k, p(), s.fromHeaders);
    locations = toLocations(s.fromHeaders);
    takesJwt = true;
    if (mode === 'JWKS') {
      if (!s.issuer) k.v.error(p('issuer'), 'required with mode: JWKS (the cluster issuer, e.g. https://kubernetes.default.svc.cluster.local)');
      if (s.tokenReview) k.v.error(p('tokenReview'), 'only allowed with mode: TokenReview');
      if (!s.audiences?.length) {
        k.v.warn(
          p('audiences'),
          'without audiences any service-account token of the cluster is admitted, whatever its audience (for example a projected token meant for another service); set the audience your clients request',
        );
      }
      if (s.jwksUri) {
        try {
          const u = new URL(s.jwksUri);
          if (u.protocol !== 'http:' && u.protocol !== 'https:') k.v.error(p('jwksUri'), 'must be an http or https URL');
        } catch {
          k.v.error(p('jwksUri'), 'not a URL');
        }
      }
      if (!k.v.hasErrors) {
        const validator = createJwtValidator(cc.runtime, { issuer: s.issuer!, audiences: s.audiences ?? [], jwksUri: s.jwksUri, tuning: cc.settings.jwks });
        member = new KubernetesMember({ ref, issuer: s.issuer!, locations, mode: { kind: 'jwks', validator }, forwardToken: s.forwardToken ?? false, forwardClaims, jwksUnavailableStatus: cc.settings.jwksUnavailableStatus });
      }
    } else {
      if (s.jwksUri) k.v.error(p('jwksUri'), 'only allowed with mode: JWKS');
      if (!s.issuer) k.v.warn(p('issuer'), 'without an issuer every JWT-shaped bearer value is sent to the TokenReview API');
      if (!s.audiences?.length) k.v.warn(p('audiences'), "without audiences the API server's default audience is accepted: any token of the cluster is admitted");
      const tr = s.tokenReview ?? {};
      const defaults = inClusterDefaults();
      const apiServer = tr.apiServer ?? defaults.apiServer;
      if (!apiServer) k.v.error(p('tokenReview', 'apiServer'), 'required outside a pod (KUBERNETES_SERVICE_HOST is not set)');
      else {
        try {
          const u = new URL(apiServer);
          if (u.protocol !== 'http:' && u.protocol !== 'https:') k.v.error(p('tokenReview', 'apiServer'), 'must be an http or https URL');
        } catch {
          k.v.error(p('tokenReview', 'apiServer'), 'not a URL');
        }
      }
      const caFile = tr.caFile ? cc.resolvePath(k.doc, tr.caFile) : tr.apiServer ? undefined : defaults.caFile;
      const tokenFile = tr.tokenFile ? cc.resolvePath(k.doc, tr.tokenFile) : tr.apiServer ? undefined : defaults.tokenFile;
      if (!k.v.hasErrors) {
        const opts = {
          apiServer: apiServer!,
          caFile,
          tokenFile,
          audiences: s.audiences ?? [],
          timeoutMs: tr.timeout ?? 1000,
          cacheTtlMs: tr.cacheTtl ?? 10_000,
        };
        let client: TokenReviewClient | undefined;
        try {
          client = cc.runtime.shared.get(`authn-tokenreview:${JSON.stringify(opts)}`, () => createTokenReviewClient(cc.runtime, opts));
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          k.v.error(p('tokenReview', 'caFile'), `cannot read the CA file${code ? `: ${code}` : ''}`);
        }
        if (client) {
          member = new KubernetesMember({ ref, issuer: s.issuer ?? '', locations, mode: { kind: 'tokenReview', client }, forwardToken: s.forwardToken ?? false, forwardClaims, jwksUnavailableStatus: cc.settings.jwksUnavailableStatus });
        }
      }
    }
  } else if (type === 'EdgeHeaders') {
    const e = spec.edge!;
    const principals = e.trustedSources?.principals ?? [];
    const ipBlocks = e.trustedSources?.ipBlocks ?? [];
    if (principals.length === 0 && ipBlocks.length === 0) {
      k.v.error(p('trustedSources'), 'name at least one trusted principal or ipBlock (edge headers from anyone else are removed)');
    }
    let blocks = null;
    if (ipBlocks.length) {
      const r = parseBlocks(ipBlocks);
      if (!r.ok) k.v.error(p('trustedSources', 'ipBlocks', r.index), r.error);
      else blocks = r.list;
    }
    const h = e.headers!;
    const claims: Record<string, string> = {};
    for (const [c, hn] of Object.entries(e.claims ?? {})) {
      if (['iss', 'sub'].includes(c)) k.v.error(p('claims', c), `claim ${c} comes from headers.${c === 'iss' ? 'issuer' : 'subject'}`);
      claims[c] = hn.toLowerCase();
    }
    if (!k.v.hasErrors) {
      member = new EdgeMember({
        ref,
        issuer,
        principals: Object.freeze(principals.map(principalMatcher)),
        blocks,
        headers: Object.freeze({
          subject: h.subject!.toLowerCase(),
          ...(h.issuer ? { issuer: h.issuer.toLowerCase() } : {}),
          ...(h.role ? { role: h.role.toLowerCase() } : {}),
          ...(h.groups ? { groups: h.groups.toLowerCase() } : {}),
          ...(h.email ? { email: h.email.toLowerCase() } : {}),
          claims: Object.freeze(claims),
        }),
        groupsSeparator: e.groupsSeparator ?? ',',
        forwardClaims,
      });
    }
  }
  if (k.v.issues.slice(before).some((i) => i.severity === 'error')) return undefined;
  const required = spec.required === undefined || spec.required === false ? null : spec.required === true ? true : compileRoute(spec.required as RawRoute);
  return Object.freeze({
    ref,
    type,
    order: spec.order ?? (type === 'JWT' ? JWT_DEFAULT_ORDER : VALIDATOR_DEFAULT_ORDER),
    scope,
    match: spec.match ? compileRoute(spec.match) : null,
    required,
    member,
    opaqueHeaders: Object.freeze(opaqueHeaders),
    takesJwt,
    locations,
  });
}

/** Validators by namespace; per workload: root namespace first, then the workload's, each by name. */
export class CredentialValidatorIndex extends ScopedIndex<CompiledValidator, CompiledValidator> {
  constructor(validators: readonly CompiledValidator[], rootNamespace: string) {
    super(
      [...validators].sort((a, b) => (a.ref < b.ref ? -1 : a.ref > b.ref ? 1 : 0)),
      rootNamespace,
      (v) => [v],
    );
  }
}
