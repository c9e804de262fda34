/**
 * Istio RequestAuthentication: the documents compiled into jwtRules (one JwtVerifier each,
 * with its key source) and indexed by namespace, so a workload finds the jwtRules in force.
 * The rules run as one member of the credential chain (jwt-rules-member.ts).
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { bool, duration, list, obj, str, type Schema } from '../config/schema.js';
import { parseScope, ScopedIndex, type CompiledScope } from '../config/scope.js';
import type { Workload } from '../core/context.js';
import type { Identity } from '../core/identity.js';
import { NO_TOKEN_LOCATIONS, type TokenLocation } from '../core/state.js';
import type { ValidatorResult } from './chain.js';
import { DEFAULT_SPACE_DELIMITED } from './claims.js';
import { DEFAULT_JWKS_TIMEOUT_MS, type JwksTuning } from '../jwt/jwks-source.js';
import { createKeySource } from '../jwt/jwt-validator.js';
import { JwtVerifier, sharedVerifiedCache, type VerifiedEntry } from '../jwt/verifier.js';

interface RawHeaderLocation {
  name?: string;
  prefix?: string;
}
interface RawClaimToHeader {
  header?: string;
  claim?: string;
}
interface RawJwtRule {
  issuer?: string;
  audiences?: string[];
  jwksUri?: string;
  jwks?: string;
  fromHeaders?: RawHeaderLocation[];
  fromParams?: string[];
  fromCookies?: string[];
  forwardOriginalToken?: boolean;
  outputPayloadToHeader?: string;
  outputClaimToHeaders?: RawClaimToHeader[];
  timeout?: number;
  spaceDelimitedClaims?: string[];
}
interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  jwtRules?: RawJwtRule[];
}

/** Istio's CRD pattern for claim header names (ValidateStrictHTTPHeaderName). */
const HEADER_NAME = /^[-_A-Za-z0-9]+$/;

const jwtRuleSchema: Schema<RawJwtRule> = obj<RawJwtRule>({
  issuer: str(),
  audiences: list(str()),
  jwksUri: str(),
  jwks: str(),
  fromHeaders: list(obj<RawHeaderLocation>({ name: str(), prefix: str() })),
  fromParams: list(str()),
  fromCookies: list(str()),
  forwardOriginalToken: bool(),
  outputPayloadToHeader: str(),
  outputClaimToHeaders: list(obj<RawClaimToHeader>({ header: str(), claim: str() })),
  timeout: duration(),
  spaceDelimitedClaims: list(str()),
});

const specSchema: Schema<RawSpec> = obj<RawSpec>({
  selector: { typeName: 'mapping', parse: (v) => v },
  targetRef: { typeName: 'mapping', parse: (v) => v },
  targetRefs: { typeName: 'list', parse: (v) => v },
  jwtRules: list(jwtRuleSchema),
});

export type { TokenLocation };

export interface CompiledJwtRule {
  /** `namespace/name` of the RequestAuthentication. */
  readonly ref: string;
  readonly index: number;
  /** `ns/name jwtRules[i]` (Identity.admittedBy, --explain). */
  readonly id: string;
  readonly issuer: string;
  readonly locations: readonly TokenLocation[];
  readonly forwardOriginalToken: boolean;
  readonly outputPayloadToHeader: string | null;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly path: readonly string[] }[];
  readonly spaceDelimitedClaims: readonly string[];
  readonly verifier: JwtVerifier;
  /**
   * What admitting a cached token derived for this rule, by the verifier's cache entry (weakly:
   * a memo lives as long as the cache keeps the entry). The rule is immutable and a reload
   * compiles new rules, so a memo depends only on the token and the location it names.
   */
  readonly admitMemos: WeakMap<VerifiedEntry, AdmitMemo>;
}

/**
 * A verified, cached token as this rule admits it at one token location: the frozen Identity,
 * the header values and the result, reused by every Check that repeats the token.
 */
export interface AdmitMemo {
  /** The token location the Identity names (`header:authorization` ...). */
  readonly label: string;
  readonly identity: Identity;
  /** outputPayloadToHeader, then outputClaimToHeaders in order: name, value, name, value, ... */
  readonly headers: readonly string[];
  /** The ValidatorResult when this token is the only one the rule found. */
  readonly single: ValidatorResult;
}

export interface CompiledRequestAuthentication {
  readonly ref: string;
  readonly scope: CompiledScope;
  readonly rules: readonly CompiledJwtRule[];
}

export const DEFAULT_LOCATIONS: readonly TokenLocation[] = Object.freeze([
  { kind: 'header', name: 'authorization', prefix: 'Bearer ', label: 'header:authorization' },
  { kind: 'param', name: 'access_token', prefix: '', label: 'param:access_token' },
] as const);

function validJwksUri(u: string): string | null {
  if (u.length > 2048) return 'jwksUri must be at most 2048 characters';
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    // Not echoed: the value may carry credentials (validate output ends up in logs).
    return 'invalid jwksUri: not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `URI scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not supported (use http or https)`;
  if (!url.hostname) return 'jwksUri must have a host';
  return null;
}

/** Compile one RequestAuthentication; reports issues on `k.v`; undefined when invalid. */
export function compileRequestAuthentication(
  k: KindDocument,
  cc: CompileContext,
  tuning: JwksTuning,
): CompiledRequestAuthentication | undefined {
  const specRaw = k.spec ?? {};
  const spec = specSchema.parse(specRaw, ['spec'], k.v);
  if (!spec) return undefined;
  const scope = parseScope(k, specRaw as Record<string, unknown>, cc.settings);
  const rules: CompiledJwtRule[] = [];
  const cache = sharedVerifiedCache(cc.runtime);
  let ok = true;
  (spec.jwtRules ?? []).forEach((r, i) => {
    const p = (...rest: (string | number)[]) => ['spec', 'jwtRules', i, ...rest];
    const before = k.v.issues.length;
    const issuer = r.issuer ?? '';
    // Istio validateJwtRule: "issuer or jwksUri must be non-empty string".
    if (!issuer && !r.jwksUri) k.v.error(p('issuer'), 'issuer or jwksUri must be non-empty string');
    (r.audiences ?? []).forEach((a, j) => {
      if (!a) k.v.error(p('audiences', j), 'audience must be non-empty string');
    });
    if (r.jwksUri !== undefined && r.jwksUri !== '') {
      const e = validJwksUri(r.jwksUri);
      if (e) k.v.error(p('jwksUri'), e);
    }
    if (r.jwks && r.jwksUri) k.v.warn(p('jwksUri'), 'both jwks and jwksUri are set: the inline jwks is used and jwksUri is ignored');
    (r.fromHeaders ?? []).forEach((h, j) => {
      if (!h.name) k.v.error(p('fromHeaders', j, 'name'), 'location header name must be non-empty string');
      else if (!HEADER_NAME.test(h.name)) k.v.error(p('fromHeaders', j, 'name'), `invalid header name ${JSON.stringify(h.name)}`);
    });
    (r.fromParams ?? []).forEach((q, j) => {
      if (!q) k.v.error(p('fromParams', j), 'location query must be non-empty string');
    });
    (r.fromCookies ?? []).forEach((c, j) => {
      if (!c) k.v.error(p('fromCookies', j), 'cookie name must be non-empty string');
    });
    if (r.outputPayloadToHeader !== undefined && r.outputPayloadToHeader !== '' && !HEADER_NAME.test(r.outputPayloadToHeader)) {
      k.v.error(p('outputPayloadToHeader'), `invalid header name ${JSON.stringify(r.outputPayloadToHeader)}`);
    }
    const outHeaders = new Set<string>();
    if (r.outputPayloadToHeader) outHeaders.add(r.outputPayloadToHeader.toLowerCase());
    (r.outputClaimToHeaders ?? []).forEach((c, j) => {
      if (!c.header || !c.claim) {
        k.v.error(p('outputClaimToHeaders', j), 'outputClaimToHeaders header and claim value must be non-empty string');
        return;
      }
      if (!HEADER_NAME.test(c.header)) k.v.error(p('outputClaimToHeaders', j, 'header'), `invalid header name ${JSON.stringify(c.header)}`);
      const lh = c.header.toLowerCase();
      if (outHeaders.has(lh)) k.v.error(p('outputClaimToHeaders', j, 'header'), `header ${JSON.stringify(c.header)} is written twice by this rule`);
      outHeaders.add(lh);
    });
    if (r.timeout !== undefined && r.timeout < 1) k.v.error(p('timeout'), 'duration must be at least 1ms');
    (r.spaceDelimitedClaims ?? []).forEach((c, j) => {
      if (!c) k.v.error(p('spaceDelimitedClaims', j), 'claim name must be non-empty string');
    });

    const locations: TokenLocation[] = [];
    for (const h of r.fromHeaders ?? []) {
      const name = (h.name ?? '').toLowerCase();
      locations.push({ kind: 'header', name, prefix: h.prefix ?? '', label: `header:${name}` });
    }
    for (const q of r.fromParams ?? []) locations.push({ kind: 'param', name: q, prefix: '', label: `param:${q}` });
    for (const c of r.fromCookies ?? []) locations.push({ kind: 'cookie', name: c, prefix: '', label: `cookie:${c}` });
    for (const l of locations) {
      if (l.kind === 'header' && outHeaders.has(l.name)) {
        k.v.error(p('outputClaimToHeaders'), `output header ${JSON.stringify(l.name)} is also a token location of this rule`);
      }
    }
    if (k.v.issues.slice(before).some((x) => x.severity === 'error')) {
      ok = false;
      return;
    }
    const timeoutMs = r.timeout ?? DEFAULT_JWKS_TIMEOUT_MS;
    let source;
    try {
      source = createKeySource(cc.runtime, { issuer, jwksUri: r.jwksUri || undefined, jwks: r.jwks || undefined, timeoutMs, tuning });
    } catch (e) {
      k.v.error(p('jwks'), (e as Error).message);
      ok = false;
      return;
    }
    rules.push(
      Object.freeze({
        ref: k.ref,
        index: i,
        id: `${k.ref} jwtRules[${i}]`,
        issuer,
        locations: locations.length > 0 ? Object.freeze(locations) : DEFAULT_LOCATIONS,
        forwardOriginalToken: r.forwardOriginalToken ?? false,
        outputPayloadToHeader: r.outputPayloadToHeader ? r.outputPayloadToHeader.toLowerCase() : null,
        outputClaimToHeaders: Object.freeze(
          (r.outputClaimToHeaders ?? []).map((c) => Object.freeze({ header: c.header!.toLowerCase(), path: Object.freeze(c.claim!.split('.')) })),
        ),
        spaceDelimitedClaims: Object.freeze([...new Set([...DEFAULT_SPACE_DELIMITED, ...(r.spaceDelimitedClaims ?? [])])]),
        verifier: new JwtVerifier(cc.runtime, { issuer, audiences: r.audiences ?? [], source, timeoutMs, cache }),
        admitMemos: new WeakMap<VerifiedEntry, AdmitMemo>(),
      }),
    );
  });
  if (!ok) return undefined;
  return Object.freeze({ ref: k.ref, scope, rules: Object.freeze(rules) });
}

/**
 * RequestAuthentication policies indexed by namespace. rulesFor(): the concatenated jwtRules
 * of every applying policy, root namespace first, then the workload's namespace, each in
 * config order (Istio concatenates all applying policies).
 */
export class RequestAuthenticationIndex extends ScopedIndex<CompiledRequestAuthentication, CompiledJwtRule> {
  constructor(policies: readonly CompiledRequestAuthentication[], rootNamespace: string) {
    super(policies, rootNamespace, (p) => p.rules);
  }

  get policyCount(): number {
    return this.count;
  }

  rulesFor(w: Workload): readonly CompiledJwtRule[] {
    return this.forWorkload(w);
  }

  /** Every token location of the jwtRules in force for the workload (one array per rules array). */
  locationsFor(w: Workload): readonly TokenLocation[] {
    const rules = this.forWorkload(w);
    if (rules.length === 0) return NO_TOKEN_LOCATIONS;
    let out = this.locations.get(rules);
    if (!out) {
      const seen = new Set<string>();
      const list: TokenLocation[] = [];
      for (const r of rules) for (const l of r.locations) if (!seen.has(l.label)) (seen.add(l.label), list.push(l));
      this.locations.set(rules, (out = Object.freeze(list)));
    }
    return out;
  }

  private readonly locations = new WeakMap<readonly CompiledJwtRule[], readonly TokenLocation[]>();
}
