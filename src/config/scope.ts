/**
 * Which workloads a namespaced policy applies to (Istio scoping): documents
 * in the root namespace apply everywhere, others to their own namespace; `selector`
 * (matchLabels) and `targetRefs` (Gateway / Service by name) narrow that. Shared by
 * RequestAuthentication, AuthorizationPolicy and TokenExchangePolicy.
 */
import { LRUCache } from 'lru-cache';
import type { Workload } from '../core/context.js';
import type { KindDocument } from './kinds.js';
import { list, obj, record, str, type Schema } from './schema.js';
import type { Settings } from './settings.js';

export interface TargetRef {
  readonly group: string;
  readonly kind: 'Gateway' | 'Service' | 'ServiceEntry' | 'GatewayClass';
  readonly name: string;
  readonly namespace?: string;
}

export interface CompiledScope {
  /** Namespace of the document. */
  readonly namespace: string;
  readonly isRoot: boolean;
  readonly matchLabels: Readonly<Record<string, string>> | null;
  readonly targetRefs: readonly TargetRef[] | null;
}

interface RawTargetRef {
  group?: string;
  kind?: string;
  name?: string;
  namespace?: string;
}

const targetRefSchema: Schema<RawTargetRef> = obj<RawTargetRef>(
  { group: str(), kind: str({ nonEmpty: true }), name: str({ nonEmpty: true }), namespace: str() },
  { required: ['kind', 'name'] },
);
const selectorSchema = obj<{ matchLabels?: Record<string, string> }>({ matchLabels: record(str()) });

const KNOWN_TARGET_KINDS = new Set(['Gateway', 'Service', 'ServiceEntry', 'GatewayClass']);

/**
 * Parse `spec.selector`, `spec.targetRef` and `spec.targetRefs` of a document. Reports
 * Istio's validation errors (selector together with targetRef(s); unsupported kinds).
 */
export function parseScope(k: KindDocument, spec: Record<string, unknown>, settings: Settings): CompiledScope {
  let matchLabels: Record<string, string> | null = null;
  let targetRefs: TargetRef[] | null = null;
  if (spec['selector'] !== undefined && spec['selector'] !== null) {
    const sel = selectorSchema.parse(spec['selector'], ['spec', 'selector'], k.v);
    if (sel?.matchLabels && Object.keys(sel.matchLabels).length > 0) matchLabels = sel.matchLabels;
  }
  const refsRaw: { path: (string | number)[]; value: unknown }[] = [];
  if (spec['targetRef'] !== undefined && spec['targetRef'] !== null) refsRaw.push({ path: ['spec', 'targetRef'], value: spec['targetRef'] });
  if (spec['targetRefs'] !== undefined && spec['targetRefs'] !== null) {
    const l = list(targetRefSchema).parse(spec['targetRefs'], ['spec', 'targetRefs'], k.v);
    if (l) l.forEach((_, i) => refsRaw.push({ path: ['spec', 'targetRefs', i], value: (spec['targetRefs'] as unknown[])[i] }));
  }
  if (refsRaw.length > 0) {
    if (matchLabels) k.v.error(['spec', 'selector'], 'only one of selector or targetRef/targetRefs may be set');
    if (spec['targetRef'] && spec['targetRefs']) k.v.error(['spec', 'targetRef'], 'only one of targetRef or targetRefs may be set');
    targetRefs = [];
    for (const r of refsRaw) {
      const t = targetRefSchema.parse(r.value, r.path, k.v);
      if (!t) continue;
      if (!KNOWN_TARGET_KINDS.has(t.kind!)) {
        k.v.error([...r.path, 'kind'], `unsupported targetRef kind ${JSON.stringify(t.kind)} (Gateway, Service, ServiceEntry or GatewayClass)`);
        continue;
      }
      if (t.namespace && t.namespace !== k.namespace) {
        k.v.error([...r.path, 'namespace'], `targetRef namespace must equal the policy's namespace ${JSON.stringify(k.namespace)}`);
        continue;
      }
      targetRefs.push({ group: t.group ?? '', kind: t.kind as TargetRef['kind'], name: t.name!, namespace: t.namespace });
    }
  }
  return Object.freeze({
    namespace: k.namespace,
    isRoot: k.namespace === settings.rootNamespace,
    matchLabels,
    targetRefs,
  });
}

/**
 * Does a policy with this scope apply to the workload? When the request carries no labels
 * (no context_extensions, no destination.labels, no Settings.workloadLabels) selector
 * policies count as applying: the stricter choice (an ignored ALLOW would allow all).
 * Likewise targetRefs apply when the request names no gateway/service.
 */
export function scopeApplies(s: CompiledScope, w: Workload): boolean {
  if (!s.isRoot && s.namespace !== w.namespace) return false;
  if (s.matchLabels) {
    if (w.hasLabels) {
      for (const key in s.matchLabels) if (w.labels[key] !== s.matchLabels[key]) return false;
    }
  }
  if (s.targetRefs) {
    let any = false;
    for (const t of s.targetRefs) {
      if (t.kind === 'Gateway' || t.kind === 'GatewayClass') {
        if (!w.gateway || w.gateway === t.name) any = true;
      } else if (!w.service || w.service === t.name) any = true;
      if (any) break;
    }
    if (!any) return false;
  }
  return true;
}

/**
 * Strict variant for scopes that *grant* something rather than restrict it (token
 * exchange: a policy narrowed to one workload mints tokens for that workload's backend).
 * A selector applies only when the request's labels positively match, and targetRefs only
 * when the request names that gateway/service: a request that cannot be identified must not
 * receive a token minted for someone else's audience.
 */
export function scopeAppliesStrict(s: CompiledScope, w: Workload): boolean {
  if (!s.isRoot && s.namespace !== w.namespace) return false;
  if (s.matchLabels) {
    if (!w.hasLabels) return false;
    for (const key in s.matchLabels) if (w.labels[key] !== s.matchLabels[key]) return false;
  }
  if (s.targetRefs) {
    let any = false;
    for (const t of s.targetRefs) {
      if (t.kind === 'Gateway' || t.kind === 'GatewayClass') any = w.gateway === t.name;
      else any = w.service === t.name;
      if (any) break;
    }
    if (!any) return false;
  }
  return true;
}

/**
 * Split scoped documents into the root namespace's (they apply to every workload) and the
 * others by namespace, keeping their order: the index every stage uses so a request only
 * reads its own namespace and the root.
 */
export function splitByNamespace<T extends { readonly scope: CompiledScope }>(
  items: readonly T[],
  rootNamespace: string,
): { root: T[]; byNamespace: Map<string, T[]> } {
  const root: T[] = [];
  const byNamespace = new Map<string, T[]>();
  for (const it of items) {
    const ns = it.scope.namespace;
    if (ns === rootNamespace) root.push(it);
    else {
      const l = byNamespace.get(ns);
      if (l) l.push(it);
      else byNamespace.set(ns, [it]);
    }
  }
  return { root, byNamespace };
}

/** Everything scopeApplies reads from a Workload, as one string (labels sorted by name). */
export function workloadKey(w: Workload): string {
  const names = Object.keys(w.labels);
  let labels = '';
  if (names.length > 0) {
    if (names.length > 1) names.sort();
    for (let i = 0; i < names.length; i++) labels += `${i > 0 ? '\u0001' : ''}${names[i]!}=${w.labels[names[i]!]}`;
  }
  return `${w.namespace}\u0000${w.hasLabels ? 1 : 0}\u0000${labels}\u0000${w.gateway}\u0000${w.service}`;
}

/**
 * Namespaced documents indexed so a request looks only at those that can apply: per workload,
 * the applying ones of the root namespace, then of the workload's namespace, in the given
 * order, each expanded (a RequestAuthentication into its jwtRules). Memoised by workloadKey
 * (bounded), and the last workload also by identity (one Check asks more than once).
 */
export class ScopedIndex<T extends { readonly scope: CompiledScope }, U> {
  private readonly root: readonly T[];
  private readonly byNamespace: ReadonlyMap<string, readonly T[]>;
  private readonly memo = new LRUCache<string, readonly U[]>({ max: 4096 });
  private readonly byNamespaceOnly = new Map<string, readonly U[]>();
  private lastWorkload: Workload | null = null;
  private lastResult: readonly U[] = [];
  readonly count: number;

  constructor(
    items: readonly T[],
    rootNamespace: string,
    private readonly expand: (item: T) => readonly U[],
  ) {
    const { root, byNamespace } = splitByNamespace(items, rootNamespace);
    this.root = root;
    this.byNamespace = byNamespace;
    this.count = items.length;
  }

  forWorkload(w: Workload): readonly U[] {
    if (this.count === 0) return [];
    if (w === this.lastWorkload) return this.lastResult;
    let out: readonly U[] | undefined;
    if (!w.hasLabels && w.gateway === '' && w.service === '') {
      // The usual workload (a namespace, no labels, gateway or service): its key is a function
      // of the namespace alone, so the namespace string finds it without building the key.
      out = this.byNamespaceOnly.get(w.namespace);
      if (!out) {
        out = this.compute(w);
        if (this.byNamespaceOnly.size >= 4096) this.byNamespaceOnly.clear();
        this.byNamespaceOnly.set(w.namespace, out);
      }
    } else {
      const key = workloadKey(w);
      out = this.memo.get(key);
      if (!out) {
        out = this.compute(w);
        this.memo.set(key, out);
      }
    }
    this.lastWorkload = w;
    this.lastResult = out;
    return out;
  }

  private compute(w: Workload): readonly U[] {
    const list: U[] = [];
    for (const it of this.root) if (scopeApplies(it.scope, w)) list.push(...this.expand(it));
    for (const it of this.byNamespace.get(w.namespace) ?? []) if (scopeApplies(it.scope, w)) list.push(...this.expand(it));
    return Object.freeze(list);
  }
}

/** Specificity for choosing among several matching policies: workload-targeted 2, namespace 1, root 0. */
export function scopeSpecificity(s: CompiledScope): number {
  if (s.matchLabels || s.targetRefs) return 2;
  return s.isRoot ? 0 : 1;
}
