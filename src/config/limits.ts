/**
 * Bounds on the work a config may ask for. A config is read, parsed and validated off the
 * main thread (pipeline/compile-worker.ts), but the compile that builds matchers runs where
 * Checks run, so what it may cost is bounded here; a config over a limit is an error that
 * names the file (and document) and the limit, and the last good config stays in force.
 * Documented in docs/operations.md ("Config limits").
 */
import type { ConfigIssue } from './issues.js';

export interface ConfigLimits {
  /** Bytes of all config files together. */
  readonly maxTotalBytes: number;
  /** YAML documents in all files together. */
  readonly maxDocuments: number;
  /** Values (mapping entries, list items, scalars) in one document, aliases expanded. */
  readonly maxNodesPerDocument: number;
  /** Rules (`spec.rules`, `spec.jwtRules`) in one document. */
  readonly maxRulesPerDocument: number;
  /** Rules in all documents together. */
  readonly maxRules: number;
}

export const DEFAULT_LIMITS: ConfigLimits = Object.freeze({
  maxTotalBytes: 4 * 1024 * 1024,
  maxDocuments: 10_000,
  maxNodesPerDocument: 50_000,
  maxRulesPerDocument: 2_000,
  maxRules: 20_000,
});

/**
 * Values in `v`, counted up to `budget + 1` (a shared, alias-expanded subtree counts every
 * time it appears, as the compile would walk it).
 */
export function countNodes(v: unknown, budget: number): number {
  let n = 0;
  const stack: unknown[] = [v];
  while (stack.length > 0 && n <= budget) {
    const x = stack.pop();
    n++;
    if (x === null || typeof x !== 'object') continue;
    if (Array.isArray(x)) for (const e of x) stack.push(e);
    else for (const k in x as Record<string, unknown>) stack.push((x as Record<string, unknown>)[k]);
  }
  return n;
}

/** Rules a document declares (`spec.rules` of AuthorizationPolicy/DelegationPolicy, `spec.jwtRules`). */
export function countRules(value: Record<string, unknown>): number {
  const spec = value['spec'];
  if (!spec || typeof spec !== 'object' || Array.isArray(spec)) return 0;
  let n = 0;
  for (const k of ['rules', 'jwtRules']) {
    const r = (spec as Record<string, unknown>)[k];
    if (Array.isArray(r)) n += r.length;
  }
  return n;
}

export function limitIssue(file: string, document: number, kind: string, name: string, message: string): ConfigIssue {
  return { severity: 'error', file, line: 1, col: 1, document, kind, name, field: document === 0 ? '(file)' : '(document)', message };
}
