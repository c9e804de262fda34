/**
 * The mutable per-Check state threaded through the pipeline stages, and the `Deny`
 * value a stage returns to stop it. Stages never throw to deny.
 */
import type { ReasonCode } from './reasons.js';
import type { RequestContext } from './context.js';
import type { Identity } from './identity.js';
import type { Runtime } from './runtime.js';
import type { McpAttribution, McpView } from './mcp.js';

export type StageName = 'context' | 'login' | 'authn' | 'authz' | 'exchange' | 'respond' | 'mcp';

/** `check --explain` trace; null on the hot path so no strings are built. */
export class Trace {
  readonly entries: { stage: StageName; message: string }[] = [];
  add(stage: StageName, message: string): void {
    this.entries.push({ stage, message });
  }
}

const NO_ENTRIES: ReadonlyMap<string, string> = new Map();

/** What to do to the request before it goes upstream (on allow). */
export class UpstreamMutations {
  /** lower-case header name -> value; set with overwrite. */
  readonly set = new Map<string, string>();
  /** lower-case header names to remove; a header also in `set` is never removed. */
  readonly remove = new Set<string>();
  // Rarely used: made on first use (one Check, one UpstreamMutations).
  private rq: Set<string> | null = null;
  private ra: Map<string, string> | null = null;
  private rl: [string, string][] | null = null;

  /** Query parameters to remove (a token taken from the query). */
  get removeQuery(): Set<string> {
    return (this.rq ??= new Set());
  }
  /** Headers added to the downstream response on allow. */
  get responseAdd(): Map<string, string> {
    return (this.ra ??= new Map());
  }
  /** removeQuery's entries (undefined when there are none), without making the set. */
  queryRemovals(): string[] | undefined {
    return this.rq && this.rq.size > 0 ? [...this.rq] : undefined;
  }
  /**
   * Headers added to the downstream response on allow as separate lines, never replacing one
   * another or the upstream's (a refreshed session's `set-cookie`, possibly in chunks).
   */
  get responseAppend(): [string, string][] {
    return (this.rl ??= []);
  }
  /** responseAppend's entries (undefined when there are none), without making the list. */
  responseLines(): readonly (readonly [string, string])[] | undefined {
    return this.rl && this.rl.length > 0 ? this.rl : undefined;
  }
  /** responseAdd's entries, without making the map. */
  responseHeaders(): ReadonlyMap<string, string> {
    return this.ra ?? NO_ENTRIES;
  }

  /**
   * Remove query parameter `name` (decoded) by every spelling the client sent it with
   * (RequestContext.queryParamNamesAsSent): Envoy removes `query_parameters_to_remove` by the
   * name as sent, so `access%5Ftoken` must be named as such.
   */
  removeQueryParam(name: string, sentAs: readonly string[]): void {
    const q = this.removeQuery;
    if (sentAs.length === 0) q.add(name);
    for (let i = 0; i < sentAs.length; i++) q.add(sentAs[i]!);
  }

  setHeader(name: string, value: string): void {
    this.set.set(name.toLowerCase(), value);
  }
  removeHeader(name: string): void {
    this.remove.add(name.toLowerCase());
  }
}

/** A place in the request where a credential is read (a jwtRule's fromHeaders/fromParams/fromCookies). */
export interface TokenLocation {
  readonly kind: 'header' | 'param' | 'cookie';
  /** Header names lower-cased. */
  readonly name: string;
  readonly prefix: string;
  /** `header:authorization`, `param:access_token`, `cookie:session` (Identity.location). */
  readonly label: string;
}

export const NO_TOKEN_LOCATIONS: readonly TokenLocation[] = Object.freeze([]);

/** A stage's answer that stops the pipeline with a deny. */
export interface Deny {
  readonly reason: ReasonCode;
  /** Body sent downstream (Envoy's exact strings); defaults per status in respond/. */
  readonly body?: string;
  /** HTTP status override (e.g. ERR_JWKS_UNAVAILABLE switched back to Envoy's 401). */
  readonly status?: number;
  /** Headers on the deny response (e.g. www-authenticate). */
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  /** Internal, secret-free explanation for logs and --explain. */
  readonly message: string;
  readonly policy?: string;
  readonly rule?: number;
}

export interface DecisionAttribution {
  /** `namespace/name` of the policy that decided (authz), or that applied (exchange). */
  policy?: string;
  rule?: number;
  /** Policies that matched in AUDIT mode or dry-run (shadow) mode. */
  audit?: string[];
  shadow?: { policy: string; rule?: number; wouldDeny: boolean }[];
  exchangePolicy?: string;
  audience?: string;
  exchangeCache?: 'hit' | 'miss';
  /** MCP facts of the request (method, tool, ...), when it is on an MCP resource or a policy read them. */
  mcp?: McpAttribution;
  /** End user named by a trusted API-key / shared-token caller (trustEndUserHeader); never a token subject. */
  endUser?: string;
}

export interface CheckState {
  readonly ctx: RequestContext;
  readonly runtime: Runtime;
  /** Aborted when the Check's deadline passes; pass it to every remote call. */
  readonly signal: AbortSignal;
  readonly trace: Trace | null;
  /** Primary authenticated identity (`request.auth.*`), null when anonymous. */
  identity: Identity | null;
  /** Every identity admitted (e.g. several jwtRules tokens); identity is identities[0]. */
  identities: readonly Identity[];
  /** The validated actor (delegation), when any. */
  actor: Identity | null;
  /**
   * Where authn looked for user tokens on this request (the jwtRules in force for the
   * workload): a stage that replaces the user's token upstream strips every one of them.
   */
  tokenLocations: readonly TokenLocation[];
  readonly upstream: UpstreamMutations;
  readonly attribution: DecisionAttribution;
  /**
   * Set by the login stage on a request an OIDCLogin protects that carries no session but
   * goes on to authn (an API client with its own bearer token): the answer when authn then
   * admits nobody, so such a request is never let through anonymously.
   */
  loginRequired?: Deny | null;
  /** MCP facts (JSON-RPC body, MCP headers), parsed on first use; undefined when no MCP feature is configured. */
  mcp?: McpView;
}

export function deny(reason: ReasonCode, message: string, extra: Omit<Deny, 'reason' | 'message'> = {}): Deny {
  return { reason, message, ...extra };
}
