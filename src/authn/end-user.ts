/**
 * `trustEndUserHeader` (APIKey and SharedToken validators): an agent platform that calls with
 * its own key or shared token may name the end user it acts for in a header (default
 * `X-End-User-Id`). Off by default. The header is removed upstream by every such validator
 * that applies to the workload, whoever calls; only when the caller was admitted by a
 * validator that trusts it is its value kept, put in `request.auth.claims[end_user]`, the
 * decision log (`endUser`), dynamic_metadata (`end_user`) and --explain. It never becomes the
 * principal or a token subject: the caller stays who it is, the end user is a statement it makes.
 */
import type { CheckState } from '../core/state.js';
import type { CredentialValidatorMember, ValidatorResult } from './chain.js';

export const DEFAULT_END_USER_HEADER = 'x-end-user-id';
export const END_USER_CLAIM = 'end_user';
const MAX_LEN = 256;

export interface EndUserOptions {
  /** Lower-cased header name. */
  readonly header: string;
  readonly trust: boolean;
}

/** Printable, no control characters, bounded: what may be logged and forwarded. */
function usable(v: string): boolean {
  return v.length > 0 && v.length <= MAX_LEN && !/[\u0000-\u001f\u007f]/.test(v) && v.trim() === v;
}

export class EndUserMember implements CredentialValidatorMember {
  readonly name: string;
  readonly metricLabel?: string;
  constructor(
    private readonly inner: CredentialValidatorMember,
    private readonly o: EndUserOptions,
  ) {
    this.name = inner.name;
    if (inner.metricLabel !== undefined) this.metricLabel = inner.metricLabel;
  }

  sanitize(state: CheckState): void {
    this.inner.sanitize?.(state);
    state.upstream.removeHeader(this.o.header);
  }

  validate(state: CheckState): ValidatorResult | Promise<ValidatorResult> {
    const r = this.inner.validate(state);
    return r instanceof Promise ? r.then((x) => this.after(state, x)) : this.after(state, r);
  }

  private after(state: CheckState, r: ValidatorResult): ValidatorResult {
    if (r.kind !== 'admit' || !this.o.trust) return r;
    const v = state.ctx.header(this.o.header);
    if (v === undefined) return r;
    if (!usable(v)) {
      state.trace?.add('authn', `${this.name}: ${this.o.header} ignored (empty, over ${MAX_LEN} characters, padded or with control characters)`);
      return r;
    }
    const [first, ...rest] = r.identities;
    if (!first) return r;
    state.attribution.endUser = v;
    // Forwarded as sent: the caller is trusted to name the end user.
    state.upstream.remove.delete(this.o.header);
    state.trace?.add('authn', `${this.name}: caller ${JSON.stringify(first.principal)} names end user ${JSON.stringify(v)} (${this.o.header}, trustEndUserHeader): request.auth.claims[${END_USER_CLAIM}]`);
    return { kind: 'admit', identities: [{ ...first, claims: { ...first.claims, [END_USER_CLAIM]: v } }, ...rest] };
  }
}
