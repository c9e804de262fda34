/**
 * The `CredentialValidator` kind (obo-authz.dev/v1alpha1): one document = one member of a
 * workload's credential chain (chain.ts), scoped like Istio policies (root namespace /
 * own namespace, selector or targetRefs), optionally only for some hosts/paths (`match`,
 * route.ts), placed in the chain by `order` relative to the RequestAuthentication jwtRules
 * (order 0), and optionally marking authentication `required`. The fields every type
 * shares are compiled here; each `type`'s block and member are compiled by its definition
 * (validator-type.ts) in the file of its member. docs/configuration/credentials.md
 * documents every field.
 */
import { DEFAULT_END_USER_HEADER, EndUserMember } from './end-user.js';
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import { any, bool, list, num, obj, str, type Schema } from '../config/schema.js';
import { parseScope, ScopedIndex, type CompiledScope } from '../config/scope.js';
import { API_KEY_TYPE } from './api-keys.js';
import type { CredentialValidatorMember } from './chain.js';
import { claimHeaderName, DEFAULT_CLAIM_PREFIX, headerName, type ClaimForwarding, type CredentialLocation } from './credential-common.js';
import { EDGE_TYPE } from './edge.js';
import { JWT_TYPE } from './jwt-rules-member.js';
import { KUBERNETES_TYPE } from './kubernetes-sa.js';
import { compileRoute, routeSchema, type RawRoute, type RouteMatch } from '../match/route.js';
import { SHARED_TOKEN_TYPE } from './shared-token.js';
import type { ValidatorTypeDef } from './validator-type.js';

export const VALIDATOR_TYPES = ['JWT', 'APIKey', 'SharedToken', 'KubernetesServiceAccount', 'EdgeHeaders'] as const;
export type ValidatorType = (typeof VALIDATOR_TYPES)[number];

/** The definition of each `type` (its block, schema, checks and member compile). */
const TYPES: Readonly<Record<ValidatorType, ValidatorTypeDef<unknown>>> = {
  JWT: JWT_TYPE,
  APIKey: API_KEY_TYPE,
  SharedToken: SHARED_TOKEN_TYPE,
  KubernetesServiceAccount: KUBERNETES_TYPE,
  EdgeHeaders: EDGE_TYPE,
};

/** Order of the jwtRules member unless a `type: JWT` document says otherwise. */
export const JWT_DEFAULT_ORDER = 0;
export const VALIDATOR_DEFAULT_ORDER = 100;

interface RawForwardClaims {
  prefix?: string;
  claims?: string[];
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
  trustEndUserHeader?: boolean;
  endUserHeader?: string;
  /** The type blocks (`apiKey`, `sharedToken`, `kubernetes`, `edge`), by name. */
  [block: string]: unknown;
}

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

const typeBlocks: Record<string, Schema<unknown>> = {};
for (const t of VALIDATOR_TYPES) {
  const d = TYPES[t];
  if (d.block && d.schema) typeBlocks[d.block] = d.schema;
}

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
    trustEndUserHeader: bool(),
    endUserHeader: headerName(),
    ...typeBlocks,
  },
  { required: ['type'] },
);

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
  const def = TYPES[type];
  const block = def.block;
  for (const t of VALIDATOR_TYPES) {
    const b = TYPES[t].block;
    if (b && b !== block && spec[b] !== undefined) k.v.errorAtKey(['spec', b], `${b} is only allowed with type: ${t} (this validator is type: ${type})`);
  }
  if (block && spec[block] === undefined) k.v.error(['spec', 'type'], `type: ${type} needs a spec.${block} block`);
  def.checkShared?.(spec, k);
  const endUser = type === 'APIKey' || type === 'SharedToken';
  if ((spec.trustEndUserHeader !== undefined || spec.endUserHeader !== undefined) && !endUser) {
    k.v.error(['spec', spec.trustEndUserHeader !== undefined ? 'trustEndUserHeader' : 'endUserHeader'], `only for type: APIKey or SharedToken (a caller admitted by a key or a shared token naming its end user), not ${type}`);
  }
  const forwardClaims = compileForwarding(k, spec.forwardClaims);
  if (k.v.issues.slice(before).some((i) => i.severity === 'error')) return undefined;

  const issuer = spec.issuer ?? def.defaultIssuer(k);
  if (issuer.endsWith('/')) k.v.error(['spec', 'issuer'], 'must not end with "/" (the principal is <issuer>/<subject>)');
  const ref = k.ref;
  const parts = def.compile({
    k,
    cc,
    block: block ? spec[block] : undefined,
    ref,
    issuer,
    forwardClaims,
    at: (...rest) => ['spec', block!, ...rest],
  });
  if (k.v.issues.slice(before).some((i) => i.severity === 'error')) return undefined;
  const required = spec.required === undefined || spec.required === false ? null : spec.required === true ? true : compileRoute(spec.required as RawRoute);
  return Object.freeze({
    ref,
    type,
    order: spec.order ?? (type === 'JWT' ? JWT_DEFAULT_ORDER : VALIDATOR_DEFAULT_ORDER),
    scope,
    match: spec.match ? compileRoute(spec.match) : null,
    required,
    member: parts.member && endUser ? new EndUserMember(parts.member, { header: (spec.endUserHeader ?? DEFAULT_END_USER_HEADER).toLowerCase(), trust: spec.trustEndUserHeader === true }) : parts.member,
    opaqueHeaders: Object.freeze([...parts.opaqueHeaders]),
    takesJwt: parts.takesJwt,
    locations: parts.locations,
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
