/**
 * The credential chain: an ordered list of validators, each of which
 * admits (one or more identities), rejects (a credential of its kind was presented and is
 * bad) or abstains (no credential of its kind). The RequestAuthentication jwtRules are one
 * member; API keys, shared tokens, Kubernetes service-account tokens and edge headers
 * (credential-validator.ts) are the others.
 *
 * Semantics:
 * - Before anything is validated, every member sanitizes the request (removes inbound
 *   copies of headers it would output, and edge identity headers from untrusted peers),
 *   so a member that never runs still cannot be spoofed through. So does every validator
 *   that applies to the workload but whose `match` leaves it out of this request's chain
 *   (index.ts runs those before calling runChain with `sanitized: true`).
 * - Members run in order; the first member that admits decides the identity and ends
 *   the chain.
 * - A hard reject (the credential is certainly of that member's kind: a JWT for the
 *   jwtRules, an API key that matched but has expired, ...) ends the chain with its 401.
 * - A soft reject (a value at a location the member reads, but not one it knows: a bearer
 *   value that is no configured API key may still be another member's shared token) lets
 *   the chain go on; when nobody admits, the first soft reject is the answer.
 * - Nobody admitted and nothing rejected: `onNoAdmit` decides (ERR_NO_VALIDATOR_ADMITTED
 *   when authentication is required for the request, else anonymous).
 */
import type { Identity } from '../core/identity.js';
import type { CheckState, Deny } from '../core/state.js';

export type ValidatorResult =
  | { readonly kind: 'admit'; readonly identities: readonly Identity[] }
  | { readonly kind: 'reject'; readonly deny: Deny; readonly soft?: boolean }
  | { readonly kind: 'abstain' };

export const ABSTAIN: ValidatorResult = Object.freeze({ kind: 'abstain' });

export interface CredentialValidatorMember {
  /** Stable name for --explain and logs (config-derived, never request data). */
  readonly name: string;
  /** `Type namespace/name` for obo_authz_credential_validations_total (unset: not counted, e.g. jwtRules). */
  readonly metricLabel?: string;
  /** Remove what a client must never be able to send upstream; runs for every member. */
  sanitize?(state: CheckState): void;
  /** Called only by runChain, after every member's sanitize(). */
  validate(state: CheckState): ValidatorResult | Promise<ValidatorResult>;
}

export interface ChainOptions {
  /**
   * The caller already ran sanitize() for every member, and for the applying validators
   * whose `match` left them out of `members` (index.ts); default: runChain sanitizes `members`.
   */
  readonly sanitized?: boolean;
  /** Called when no member admitted and none rejected; its Deny (if any) is the answer. */
  readonly onNoAdmit?: (state: CheckState) => Deny | null;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

function count(state: CheckState, m: CredentialValidatorMember, result: 'admit' | 'reject' | 'unrecognized' | 'abstain'): void {
  if (!m.metricLabel) return;
  state.runtime.metrics
    .counter('credential_validations_total', 'Credential validator outcomes by validator (Type namespace/name) and result.', ['validator', 'result'] as const)
    .inc({ validator: m.metricLabel, result });
}

const SOFT = Symbol('soft reject');

/** One member's result: the chain's answer (a Deny or null), SOFT, or undefined (go on). */
function settle(state: CheckState, m: CredentialValidatorMember, r: ValidatorResult): Deny | null | typeof SOFT | undefined {
  count(state, m, r.kind === 'reject' ? (r.soft ? 'unrecognized' : 'reject') : r.kind === 'admit' && r.identities.length > 0 ? 'admit' : 'abstain');
  if (r.kind === 'reject') {
    if (!r.soft) return r.deny;
    state.trace?.add('authn', `${m.name}: credential not recognized; trying the next validator`);
    return SOFT;
  }
  if (r.kind === 'admit' && r.identities.length > 0) {
    const ids = r.identities;
    // The validator's (frozen) array itself when it is the first to admit: nothing copied.
    state.identities = state.identities.length === 0 ? ids : [...state.identities, ...ids];
    if (!state.identity) state.identity = ids[0]!;
    state.trace?.add('authn', `${m.name}: admitted ${ids[0]!.principal}`);
    return null;
  }
  return undefined;
}

/**
 * Run the members in order (see the module comment for the rules). Synchronous as long as
 * every member answers synchronously (a cached token); a promise from the first member
 * that does not.
 */
export function runChain(state: CheckState, members: readonly CredentialValidatorMember[], opts: ChainOptions = {}): Deny | null | Promise<Deny | null> {
  if (!opts.sanitized) for (const m of members) m.sanitize?.(state);
  return runFrom(state, members, opts, 0, null);
}

function runFrom(state: CheckState, members: readonly CredentialValidatorMember[], opts: ChainOptions, start: number, soft0: Deny | null): Deny | null | Promise<Deny | null> {
  let soft = soft0;
  for (let i = start; i < members.length; i++) {
    const m = members[i]!;
    const r0 = m.validate(state);
    if (isPromise(r0)) {
      const before = soft;
      return r0.then((r) => {
        const o = settle(state, m, r);
        if (o === undefined) return runFrom(state, members, opts, i + 1, before);
        if (o === SOFT) return runFrom(state, members, opts, i + 1, before ?? (r as Extract<ValidatorResult, { kind: 'reject' }>).deny);
        return o;
      });
    }
    const o = settle(state, m, r0);
    if (o === undefined) continue;
    if (o === SOFT) {
      soft ??= (r0 as Extract<ValidatorResult, { kind: 'reject' }>).deny;
      continue;
    }
    return o;
  }
  if (soft) return soft;
  return opts.onNoAdmit ? opts.onNoAdmit(state) : null;
}
