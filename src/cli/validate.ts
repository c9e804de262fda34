/** `obo-authz validate --config PATH...`: every error as file:line:col: document N (Kind/name): field: message. */
import { loadConfig } from '../pipeline/compile.js';
import { formatIssue } from '../config/issues.js';
import { createLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { SharedResources } from '../core/runtime.js';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';

/** A runtime for offline use (validate, check --config): no background fetch is awaited. */
export function offlineRuntime(level = 'silent'): Runtime {
  return {
    now: () => Date.now(),
    fetch: (input, init) => fetch(input, init),
    logger: createLogger({ level, destination: process.stderr as never }),
    metrics: new Metrics(),
    shared: new SharedResources(),
  };
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

export function runValidate(paths: readonly string[], io: Io): number {
  const runtime = offlineRuntime();
  try {
    const r = loadConfig(paths, runtime);
    for (const i of r.issues) io.err(formatIssue(i));
    if (!r.ok) {
      const n = r.issues.filter((i) => i.severity === 'error').length;
      io.err(`${n} error${n === 1 ? '' : 's'}`);
      return 2;
    }
    const counts = Object.entries(r.config.counts)
      .map(([k, v]) => `${v} ${k}`)
      .join(', ');
    io.out(`ok: ${r.config.files.length} file(s)${counts ? `: ${counts}` : ''} (config ${r.config.hash})`);
    return 0;
  } finally {
    runtime.shared.disposeAll();
  }
}
