/**
 * The SecurityTokenService kind: exactly one of `builtin` (sts-builtin.ts, with its optional
 * HTTP token endpoint in token-endpoint.ts) or `remote` (sts-remote.ts); which builtin STS is
 * served over HTTP; and the one call the stage makes to an STS of either kind.
 */
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { bool, obj } from '../config/schema.js';
import type { Identity } from '../core/identity.js';
import type { Runtime } from '../core/runtime.js';
import type { CompiledDelegationPolicy } from './delegation.js';
import type { ExchangeFailure } from './errors.js';
import { BUILTIN_FIELDS, compileBuiltinSts, type BuiltinSts, type RawBuiltin } from './sts-builtin.js';
import { compileRemote, remoteSchema, type CompiledRemoteSts, type RawRemote } from './sts-remote.js';
import { compileTokenEndpoint, tokenEndpointSchema, type CompiledTokenEndpoint, type RawTokenEndpoint } from './token-endpoint.js';

interface RawSts {
  default?: boolean;
  builtin?: RawBuiltin & { tokenEndpoint?: RawTokenEndpoint };
  remote?: RawRemote;
}

const stsSchema = obj<RawSts>({
  default: bool(),
  builtin: obj({ ...BUILTIN_FIELDS, tokenEndpoint: tokenEndpointSchema }, { required: ['issuer', 'keys'] }),
  remote: remoteSchema,
});

export interface CompiledBuiltinSts {
  readonly kind: 'builtin';
  readonly ref: string;
  /** Identity of the STS for cache keys: changes when its settings or keys change. */
  readonly id: string;
  readonly sts: BuiltinSts;
  readonly isDefault: boolean;
  /** Settings of the HTTP token endpoint; null = only JWKS and discovery are served. */
  readonly tokenEndpoint: CompiledTokenEndpoint | null;
}
export type CompiledSts = CompiledBuiltinSts | CompiledRemoteSts;

export interface CompiledStss {
  /** Every valid SecurityTokenService by `namespace/name`. */
  readonly stss: ReadonlyMap<string, CompiledSts>;
  /** The builtin STS served on the HTTP port (the one with `default: true`, or the only one). */
  readonly httpSts: CompiledBuiltinSts | null;
}

export function compileSecurityTokenServices(
  docs: readonly KindDocument[],
  delegations: ReadonlyMap<string, CompiledDelegationPolicy>,
  cc: CompileContext,
): CompiledStss {
  const stss = new Map<string, CompiledSts>();
  const builtins: CompiledBuiltinSts[] = [];
  for (const k of docs) {
    const s = stsSchema.parse(k.spec ?? {}, ['spec'], k.v);
    if (!s) continue;
    if ((s.builtin ? 1 : 0) + (s.remote ? 1 : 0) !== 1) {
      k.v.error(['spec'], 'exactly one of builtin or remote must be set');
      continue;
    }
    if (s.builtin) {
      const m = compileBuiltinSts(k, s.builtin, cc);
      if (!m) continue;
      const te = s.builtin.tokenEndpoint;
      const c: CompiledBuiltinSts = {
        kind: 'builtin',
        ref: k.ref,
        id: m.id,
        sts: m.sts,
        isDefault: s.default === true,
        tokenEndpoint: te ? compileTokenEndpoint(k, te, m.sts, m.id, cc, delegations) : null,
      };
      stss.set(k.ref, c);
      builtins.push(c);
    } else {
      if (s.default) k.v.error(['spec', 'default'], 'only a builtin STS can be the default served over HTTP');
      const c = compileRemote(k, s.remote!, cc);
      if (c) stss.set(k.ref, c);
    }
  }
  let httpSts: CompiledBuiltinSts | null = null;
  const marked = builtins.filter((b) => b.isDefault);
  if (marked.length > 1) {
    const second = docs.find((d) => d.ref === marked[1]!.ref);
    second?.v.error(['spec', 'default'], `only one SecurityTokenService may be the default (also ${marked[0]!.ref})`);
  } else if (marked.length === 1) httpSts = marked[0]!;
  else if (builtins.length === 1) httpSts = builtins[0]!;
  else if (builtins.length > 1) {
    const d = docs.find((x) => x.ref === builtins[1]!.ref);
    d?.v.warn(['spec', 'default'], 'several builtin STSs and none has default: true; none is served over HTTP');
  }
  return { stss, httpSts };
}

/** What a TokenExchangePolicy asks of its STS (constant per policy). */
export interface StsTarget {
  readonly sts: CompiledSts;
  readonly audiences: readonly string[];
  readonly resources: readonly string[];
  readonly scopes: readonly string[];
  readonly requestedTokenType: string | undefined;
  readonly subjectTokenType: string;
}

export interface Issued {
  readonly ok: true;
  readonly accessToken: string;
  readonly expiresAt: number | undefined;
}

/** The subject's expiry (s): the Identity's, else its `exp` claim. */
export function subjectExp(id: Identity): number | undefined {
  if (id.expiresAt !== undefined) return id.expiresAt;
  const e = id.claims['exp'];
  return typeof e === 'number' ? e : undefined;
}

/**
 * One exchange: a mint by the builtin STS (in process) or an RFC 8693 call to a remote one.
 * `actorIsSubject` suppresses the `act` link (machine-to-machine); the remote STS gets the
 * actor token regardless and decides itself.
 */
export async function callSts(p: StsTarget, subject: Identity, actor: Identity | null, actorIsSubject: boolean, actorTokenType: string, rt: Runtime): Promise<Issued | ExchangeFailure> {
  const sts = p.sts;
  if (sts.kind === 'builtin') {
    const r = await sts.sts.mint(
      {
        subjectClaims: subject.claims,
        ...(subjectExp(subject) !== undefined ? { subjectExp: subjectExp(subject)! } : {}),
        // Actor == subject (machine-to-machine): no act claim.
        ...(actor && !actorIsSubject ? { actor: { sub: actor.subject, ...(actor.issuer ? { iss: actor.issuer } : {}) } } : {}),
        audiences: p.audiences,
        resources: p.resources,
        scopes: p.scopes,
        ...(p.requestedTokenType ? { requestedTokenType: p.requestedTokenType } : {}),
      },
      rt,
    );
    return r.ok ? { ok: true, accessToken: r.accessToken, expiresAt: r.expiresAt } : r;
  }
  const r = await sts.client.exchange({
    subjectToken: subject.token!,
    subjectTokenType: p.subjectTokenType,
    ...(actor ? { actorToken: actor.token!, actorTokenType } : {}),
    audiences: p.audiences,
    resources: p.resources,
    scopes: p.scopes,
    ...(p.requestedTokenType ? { requestedTokenType: p.requestedTokenType } : {}),
  });
  return r.ok ? { ok: true, accessToken: r.accessToken, expiresAt: r.expiresAt } : r;
}
