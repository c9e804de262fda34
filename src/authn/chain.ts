/**
 * The credential chain (DESIGN.md §6): an ordered list of validators, each of which
 * admits (one or more identities), rejects (a credential of its kind was presented and is
 * bad: the chain stops with that deny) or abstains (no credential of its kind). The
 * RequestAuthentication jwtRules are one member; API keys, shared tokens, Kubernetes
 * service-account tokens and edge headers (issue 6) become further members.
 */
import type { Identity } from '../pipeline/identity.js';
import type { CheckState, Deny } from '../pipeline/state.js';

export type ValidatorResult =
  | { readonly kind: 'admit'; readonly identities: readonly Identity[] }
  | { readonly kind: 'reject'; readonly deny: Deny }
  | { readonly kind: 'abstain' };

export const ABSTAIN: ValidatorResult = Object.freeze({ kind: 'abstain' });

export interface CredentialValidatorMember {
  /** Stable name for --explain and logs (config-derived, never request data). */
  readonly name: string;
  validate(state: CheckState): ValidatorResult | Promise<ValidatorResult>;
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function';
}

/**
 * Run the members in order. Every member runs (a bad credential is rejected even when an
 * earlier member admitted someone); the first reject stops the chain. Identities are
 * collected in order; the first admitted one becomes `state.identity`.
 */
export async function runChain(state: CheckState, members: readonly CredentialValidatorMember[]): Promise<Deny | null> {
  for (const m of members) {
    const r0 = m.validate(state);
    const r = isPromise(r0) ? await r0 : r0;
    if (r.kind === 'reject') return r.deny;
    if (r.kind === 'admit') {
      for (const id of r.identities) {
        state.identities.push(id);
        if (!state.identity) state.identity = id;
      }
    }
  }
  return null;
}
