/**
 * Per-tool tokens: a TokenExchangePolicy's `tools` narrows the exchanged token by the MCP
 * tool a `tools/call` names (scopes and/or audience/resource per tool), so the backend gets
 * a token good for the called tool only. Each entry compiles to a variant of the policy
 * (its own targets and cache-key prefix); the tool is read from core's MCP view, and a
 * tools/call whose body cannot be read is denied with that problem's reason code — the
 * exchange never guesses the tool.
 */
import type { KindDocument } from '../config/kinds.js';
import { list, obj, str, type Schema } from '../config/schema.js';
import { strOrList } from './compile-helpers.js';
import { MCP_PROBLEM_REASONS } from '../core/mcp.js';
import { deny, type CheckState, type Deny } from '../core/state.js';
import { StringSet } from '../match/strings.js';
import { exchangeKeyPrefix, PolicyKeys } from './cache.js';
import type { StsTarget } from './sts.js';

/** What a variant changes of a compiled TokenExchangePolicy (structural: policy.ts imports this file). */
export interface Narrowable extends StsTarget {
  readonly ref: string;
  readonly mode: string;
  readonly keys: PolicyKeys;
}

export interface RawToolTarget {
  names?: string[];
  audience?: string | string[];
  resource?: string | string[];
  scopes?: string[];
}

export const toolTargetsSchema: Schema<RawToolTarget[]> = list(
  obj<RawToolTarget>(
    { names: list(str({ nonEmpty: true }), { minItems: 1 }), audience: strOrList(), resource: strOrList(), scopes: list(str({ nonEmpty: true })) },
    { required: ['names'] },
  ),
  { minItems: 1 },
);

export interface ToolVariant<P extends Narrowable> {
  readonly match: StringSet;
  readonly policy: P;
}

const asList = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

/** One variant per `tools` entry: the entry's audience/resource/scopes replace the target's where given. */
export function compileToolVariants<P extends Narrowable>(k: KindDocument, raw: RawToolTarget[] | undefined, base: P): readonly ToolVariant<P>[] {
  if (!raw) return [];
  const out: ToolVariant<P>[] = [];
  raw.forEach((t, i) => {
    const path = ['spec', 'tools', i];
    if (t.audience === undefined && t.resource === undefined && t.scopes === undefined) {
      k.v.error(path, 'set at least one of audience, resource or scopes (what the token for these tools narrows to)');
      return;
    }
    const audiences = asList(t.audience) ?? (t.resource === undefined ? base.audiences : []);
    const resources = asList(t.resource) ?? (t.audience === undefined ? base.resources : []);
    resources.forEach((r, j) => {
      if (!/^[a-z][a-z0-9+.-]*:/i.test(r)) k.v.error([...path, 'resource', ...(Array.isArray(t.resource) ? [j] : [])], `resource ${JSON.stringify(r)} must be an absolute URI`);
    });
    const scopes = t.scopes ?? base.scopes;
    const policy: P = Object.freeze({
      ...base,
      audiences: Object.freeze([...audiences]),
      resources: Object.freeze([...resources]),
      scopes: Object.freeze([...scopes]),
      keys: new PolicyKeys(exchangeKeyPrefix(base.sts.id, base.mode, audiences, resources, scopes, base.requestedTokenType, base.subjectTokenType)),
    });
    out.push({ match: new StringSet(t.names!, { star: 'nonEmpty' }), policy });
  });
  return Object.freeze(out);
}

/**
 * The policy to exchange with for this request: the variant of the called tool, else the
 * policy itself (tools not listed, and requests other than tools/call, get `target`).
 * A Deny when the request is an MCP POST whose body cannot be read.
 */
export function narrowForTool<P extends Narrowable>(state: CheckState, p: P, variants: readonly ToolVariant<P>[]): P | Deny {
  if (variants.length === 0) return p;
  const view = state.mcp;
  if (!view) return p;
  const f = view.facts();
  if (f.problem !== null) {
    if (state.ctx.method !== 'POST') return p;
    state.trace?.add('exchange', `${p.ref}: per-tool tokens need the MCP body, which cannot be read (${f.problem}: ${f.detail})`);
    return deny(MCP_PROBLEM_REASONS[f.problem], `per-tool exchange of ${p.ref} needs the MCP body (${f.problem}: ${f.detail})`, { policy: p.ref });
  }
  // A batch naming several tools gets no single narrowed token: refused rather than guessed.
  const tools = new Set(f.messages.map((m) => m.tool).filter((t): t is string => t !== undefined));
  if (tools.size > 1) {
    return deny('ERR_MCP_BODY_INVALID', `per-tool exchange of ${p.ref}: a batch calls ${tools.size} different tools; one token cannot be narrowed to all`, { policy: p.ref });
  }
  const tool = tools.values().next().value;
  if (tool === undefined) return p;
  for (const v of variants) {
    if (v.match.test(tool)) {
      state.trace?.add('exchange', `${p.ref}: tool ${JSON.stringify(tool)}: token narrowed to audience ${JSON.stringify([...v.policy.audiences, ...v.policy.resources])} scopes ${JSON.stringify(v.policy.scopes)}`);
      return v.policy;
    }
  }
  state.trace?.add('exchange', `${p.ref}: tool ${JSON.stringify(tool)} matches no tools entry: the policy's target applies`);
  return p;
}
