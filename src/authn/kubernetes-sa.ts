/**
 * Kubernetes service-account tokens (CredentialValidator `type: KubernetesServiceAccount`),
 * validated either locally against the API server's keys (OIDC discovery at the cluster
 * issuer, or a configured jwksUri; createJwtValidator) or by asking the API server
 * (TokenReview, src/kubernetes/tokenreview.ts; the only way on EKS, and the only way to
 * notice a bound token whose pod is gone).
 *
 * Identity: principal `<iss>/system:serviceaccount:<ns>:<name>` — exactly what a
 * RequestAuthentication for the cluster issuer would produce — with the token's claims,
 * `sub`, and `kubernetes.io: {namespace, serviceaccount: {name}}` filled in when the token
 * lacks them (legacy tokens), so policies can use request.auth.claims[kubernetes.io][namespace].
 */
import { decodeJwt } from 'jose';
import { bool, list, obj, str } from '../config/schema.js';
import { deny, type CheckState } from '../core/state.js';
import { parseServiceAccountUser, type TokenReviewClient } from '../kubernetes/tokenreview.js';
import { compileTokenReviewSettings, TOKENREVIEW_SETTINGS_FIELDS, type RawTokenReviewSettings } from '../kubernetes/tokenreview-settings.js';
import { removeCredentialHeader } from './api-keys.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import {
  applyClaimHeaders,
  challengeFor,
  checkLocations,
  credentialDeny,
  findCredential,
  locationsSchema,
  makeIdentity,
  sanitizeClaimHeaders,
  toLocations,
  type ClaimForwarding,
  type CredentialLocation,
  type FoundCredential,
  type RawHeaderLocation,
} from './credential-common.js';
import type { TypeCompileInput, TypeParts, ValidatorTypeDef } from './validator-type.js';
import { createJwtValidator, type JwtValidator } from '../jwt/jwt-validator.js';

export interface KubernetesMemberOptions {
  readonly ref: string;
  /** Expected `iss`: tokens with another issuer are left to other validators. '' = any (TokenReview only). */
  readonly issuer: string;
  readonly locations: readonly CredentialLocation[];
  readonly mode: { kind: 'jwks'; validator: JwtValidator } | { kind: 'tokenReview'; client: TokenReviewClient };
  readonly forwardToken: boolean;
  readonly forwardClaims: ClaimForwarding | null;
  readonly jwksUnavailableStatus: 401 | 503;
}

function unverifiedPayload(token: string): Record<string, unknown> | null {
  try {
    return decodeJwt(token) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Claims as the API server's projected tokens carry them, completed for legacy tokens. */
export function serviceAccountClaims(payload: Record<string, unknown>, ns: string, name: string, groups?: readonly string[]): Record<string, unknown> {
  const k8s = payload['kubernetes.io'];
  const base = k8s && typeof k8s === 'object' && !Array.isArray(k8s) ? (k8s as Record<string, unknown>) : {};
  const sa = base['serviceaccount'] && typeof base['serviceaccount'] === 'object' ? (base['serviceaccount'] as Record<string, unknown>) : {};
  const out: Record<string, unknown> = { ...payload, 'kubernetes.io': { ...base, namespace: ns, serviceaccount: { ...sa, name } } };
  if (groups && groups.length) out['groups'] = [...groups];
  return out;
}

export class KubernetesMember implements CredentialValidatorMember {
  readonly name: string;
  readonly metricLabel: string;
  constructor(readonly o: KubernetesMemberOptions) {
    this.name = `KubernetesServiceAccount ${o.ref}`;
    this.metricLabel = this.name;
  }

  sanitize(state: CheckState): void {
    sanitizeClaimHeaders(state, this.o.forwardClaims);
  }

  async validate(state: CheckState): Promise<ValidatorResult> {
    const o = this.o;
    const found = findCredential(state, o.locations, 'jwt');
    if (!found) {
      state.trace?.add('authn', `${this.name}: no JWT-shaped token at ${o.locations.map((l) => l.label).join(', ')}`);
      return ABSTAIN;
    }
    const payload = unverifiedPayload(found.value);
    const iss = typeof payload?.['iss'] === 'string' ? (payload['iss'] as string) : '';
    if (o.issuer && iss !== o.issuer) {
      state.trace?.add('authn', `${this.name}: token issuer is not ${JSON.stringify(o.issuer)}: not a service-account token of this cluster`);
      return ABSTAIN;
    }
    return o.mode.kind === 'jwks' ? this.viaJwks(state, found, o.mode.validator) : this.viaTokenReview(state, found, o.mode.client);
  }

  private async viaJwks(state: CheckState, found: FoundCredential, v: JwtValidator): Promise<ValidatorResult> {
    const o = this.o;
    const r = await v.verify(found.value, state.signal);
    if (!r.ok) {
      if (r.reason === 'ERR_JWKS_UNAVAILABLE') {
        const d = deny('ERR_JWKS_UNAVAILABLE', `${this.name}: ${r.message}`, {
          status: o.jwksUnavailableStatus,
          headers: o.jwksUnavailableStatus === 401 ? [['www-authenticate', challengeFor(state, found.location, true)]] : [],
          policy: o.ref,
        });
        return { kind: 'reject', deny: d };
      }
      const reason = r.reason === 'ERR_JWT_EXPIRED' ? 'ERR_CREDENTIAL_EXPIRED' : 'ERR_INVALID_CREDENTIAL';
      const d = credentialDeny(state, reason, `${this.name}: ${r.message}`, found.location, o.ref);
      state.trace?.add('authn', d.message);
      return { kind: 'reject', deny: d };
    }
    const sub = typeof r.payload['sub'] === 'string' ? (r.payload['sub'] as string) : '';
    const sa = parseServiceAccountUser(sub);
    if (!sa) {
      const d = credentialDeny(state, 'ERR_INVALID_CREDENTIAL', `${this.name}: token subject is not system:serviceaccount:<namespace>:<name>`, found.location, o.ref);
      return { kind: 'reject', deny: d };
    }
    const aud = r.payload['aud'];
    const exp = r.payload['exp'];
    return this.admit(state, found, {
      issuer: r.payload['iss'] as string,
      subject: sub,
      claims: serviceAccountClaims(r.payload, sa.namespace, sa.name),
      audiences: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [],
      expiresAt: typeof exp === 'number' ? exp : undefined,
    });
  }

  private async viaTokenReview(state: CheckState, found: FoundCredential, client: TokenReviewClient): Promise<ValidatorResult> {
    const o = this.o;
    const r = await client.review(found.value, state.signal);
    if (!r.ok) {
      if (r.kind === 'unavailable') {
        const d = deny('ERR_JWKS_UNAVAILABLE', `${this.name}: ${r.message}`, { status: 503, body: 'Kubernetes TokenReview is unavailable', policy: o.ref });
        return { kind: 'reject', deny: d };
      }
      const d = credentialDeny(state, 'ERR_INVALID_CREDENTIAL', `${this.name}: TokenReview: ${r.message}`, found.location, o.ref);
      // Without an expected issuer the token may be another validator's JWT.
      return { kind: 'reject', deny: d, soft: !o.issuer };
    }
    if (!r.serviceAccount) {
      return { kind: 'reject', deny: credentialDeny(state, 'ERR_INVALID_CREDENTIAL', `${this.name}: TokenReview user is not a service account`, found.location, o.ref) };
    }
    const issuer = r.issuer || 'kubernetes';
    return this.admit(state, found, {
      issuer,
      subject: r.username,
      claims: serviceAccountClaims({ ...r.claims }, r.serviceAccount.namespace, r.serviceAccount.name, r.groups),
      audiences: r.audiences,
      expiresAt: r.expiresAt,
    });
  }

  private admit(
    state: CheckState,
    found: FoundCredential,
    x: { issuer: string; subject: string; claims: Record<string, unknown>; audiences: readonly string[]; expiresAt: number | undefined },
  ): ValidatorResult {
    const o = this.o;
    const id = makeIdentity({
      kind: 'kubernetes',
      issuer: x.issuer,
      subject: x.subject,
      claims: x.claims,
      audiences: x.audiences,
      admittedBy: o.ref,
      token: found.value,
      location: found.location.label,
      ...(x.expiresAt !== undefined ? { expiresAt: x.expiresAt } : {}),
    });
    if (!o.forwardToken) removeCredentialHeader(state, found.location);
    applyClaimHeaders(state, o.forwardClaims, id);
    state.trace?.add('authn', `${this.name}: ${x.subject} admitted`);
    return { kind: 'admit', identities: [id] };
  }
}

interface RawKubernetes {
  mode?: string;
  issuer?: string;
  jwksUri?: string;
  audiences?: string[];
  fromHeaders?: RawHeaderLocation[];
  forwardToken?: boolean;
  tokenReview?: RawTokenReviewSettings;
}

/** A URL setting that must be http(s); the value is not echoed (it may carry credentials). */
function checkHttpUrl(x: TypeCompileInput<RawKubernetes>, value: string, path: (string | number)[]): void {
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') x.k.v.error(x.at(...path), 'must be an http or https URL');
  } catch {
    x.k.v.error(x.at(...path), 'not a URL');
  }
}

/** `mode: JWKS`: the token is verified here against the cluster issuer's keys. */
function compileJwks(x: TypeCompileInput<RawKubernetes>, locations: readonly CredentialLocation[]): KubernetesMember | null {
  const { k, cc, block: s, at } = x;
  if (!s.issuer) k.v.error(at('issuer'), 'required with mode: JWKS (the cluster issuer, e.g. https://kubernetes.default.svc.cluster.local)');
  if (s.tokenReview) k.v.error(at('tokenReview'), 'only allowed with mode: TokenReview');
  if (!s.audiences?.length) {
    k.v.warn(
      at('audiences'),
      'without audiences any service-account token of the cluster is admitted, whatever its audience (for example a projected token meant for another service); set the audience your clients request',
    );
  }
  if (s.jwksUri) checkHttpUrl(x, s.jwksUri, ['jwksUri']);
  if (k.v.hasErrors) return null;
  const validator = createJwtValidator(cc.runtime, { issuer: s.issuer!, audiences: s.audiences ?? [], jwksUri: s.jwksUri, tuning: cc.settings.jwks });
  return new KubernetesMember({ ref: x.ref, issuer: s.issuer!, locations, mode: { kind: 'jwks', validator }, forwardToken: s.forwardToken ?? false, forwardClaims: x.forwardClaims, jwksUnavailableStatus: cc.settings.jwksUnavailableStatus });
}

/** `mode: TokenReview`: the API server is asked (the shared TokenReview settings compile). */
function compileTokenReview(x: TypeCompileInput<RawKubernetes>, locations: readonly CredentialLocation[]): KubernetesMember | null {
  const { k, cc, block: s, at } = x;
  if (s.jwksUri) k.v.error(at('jwksUri'), 'only allowed with mode: JWKS');
  if (!s.issuer) k.v.warn(at('issuer'), 'without an issuer every JWT-shaped bearer value is sent to the TokenReview API');
  if (!s.audiences?.length) k.v.warn(at('audiences'), "without audiences the API server's default audience is accepted: any token of the cluster is admitted");
  const site = { v: k.v, path: at('tokenReview'), resolvePath: (p: string) => cc.resolvePath(k.doc, p), outsideCluster: cc.outsideCluster === true };
  const client = compileTokenReviewSettings(s.tokenReview ?? {}, s.audiences ?? [], site, cc.runtime);
  if (!client) return null;
  return new KubernetesMember({ ref: x.ref, issuer: s.issuer ?? '', locations, mode: { kind: 'tokenReview', client }, forwardToken: s.forwardToken ?? false, forwardClaims: x.forwardClaims, jwksUnavailableStatus: cc.settings.jwksUnavailableStatus });
}

/** CredentialValidator `type: KubernetesServiceAccount` (`spec.kubernetes`). */
export const KUBERNETES_TYPE: ValidatorTypeDef<RawKubernetes> = {
  block: 'kubernetes',
  schema: obj<RawKubernetes>({
    mode: str({ enum: ['JWKS', 'TokenReview'] }),
    issuer: str({ nonEmpty: true }),
    jwksUri: str({ nonEmpty: true }),
    audiences: list(str({ nonEmpty: true })),
    fromHeaders: locationsSchema,
    forwardToken: bool(),
    tokenReview: obj<RawTokenReviewSettings>({ ...TOKENREVIEW_SETTINGS_FIELDS }),
  }),
  defaultIssuer: () => '',
  checkShared(spec, k) {
    if (spec.issuer) k.v.error(['spec', 'issuer'], 'the issuer of a service-account token is its `iss`: set spec.kubernetes.issuer');
  },
  compile(x): TypeParts {
    checkLocations(x.k, x.at(), x.block.fromHeaders);
    const locations = toLocations(x.block.fromHeaders);
    const member = (x.block.mode ?? 'JWKS') === 'JWKS' ? compileJwks(x, locations) : compileTokenReview(x, locations);
    return { member, locations, opaqueHeaders: [], takesJwt: true };
  },
};
