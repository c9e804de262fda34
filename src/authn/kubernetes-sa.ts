/**
 * Kubernetes service-account tokens (CredentialValidator `type: KubernetesServiceAccount`),
 * validated either locally against the API server's keys (OIDC discovery at the cluster
 * issuer, or a configured jwksUri; createJwtValidator) or by asking the API server
 * (TokenReview, src/exchange/tokenreview.ts; the only way on EKS, and the only way to
 * notice a bound token whose pod is gone).
 *
 * Identity: principal `<iss>/system:serviceaccount:<ns>:<name>` — exactly what a
 * RequestAuthentication for the cluster issuer would produce — with the token's claims,
 * `sub`, and `kubernetes.io: {namespace, serviceaccount: {name}}` filled in when the token
 * lacks them (legacy tokens), so policies can use request.auth.claims[kubernetes.io][namespace].
 */
import { decodeJwt } from 'jose';
import { deny, type CheckState } from '../core/state.js';
import { parseServiceAccountUser, type TokenReviewClient } from '../kubernetes/tokenreview.js';
import { removeCredentialHeader } from './api-keys.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import {
  applyClaimHeaders,
  challengeFor,
  credentialDeny,
  findCredential,
  makeIdentity,
  sanitizeClaimHeaders,
  type ClaimForwarding,
  type CredentialLocation,
  type FoundCredential,
} from './credential-common.js';
import type { JwtValidator } from '../jwt/jwt-validator.js';

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
