/** The Decision: the value every Check ends in, turned into a CheckResponse by respond/. */
import type { ReasonCode } from './reasons.js';
import type { Identity } from './identity.js';
import type { RequestContext } from './context.js';
import type { DecisionAttribution, Trace, UpstreamMutations } from './state.js';

export interface Decision {
  readonly allow: boolean;
  readonly reason: ReasonCode;
  /** HTTP status for a deny; 200 for allow (not sent). */
  readonly httpStatus: number;
  /** Deny body (Envoy's exact strings); '' for allow. */
  readonly body: string;
  readonly denyHeaders: ReadonlyArray<readonly [string, string]>;
  readonly upstream: UpstreamMutations;
  readonly attribution: DecisionAttribution;
  readonly identity: Identity | null;
  readonly actor: Identity | null;
  /** Internal, secret-free explanation (logs, --explain). */
  readonly message: string;
  readonly trace: Trace | null;
  /** The request's `x-request-id` (Envoy's `attributes.request.http.id` only when the header is absent). */
  readonly requestId: string;
  /** What was asked (method, host, path, client address for the decision log); absent when no context could be built. */
  readonly request?: RequestContext;
}
