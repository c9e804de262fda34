/** What every offline subcommand shares: its output streams and a runtime that serves nothing. */
import { createLogger } from '../observability/logger.js';
import { Metrics } from '../observability/metrics.js';
import { SharedResources, type FetchLike } from '../core/runtime.js';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';

export interface Io {
  out(s: string): void;
  err(s: string): void;
}

/** The process's stdout / stderr, one line per call. */
export const processIo: Io = {
  out: (s) => process.stdout.write(`${s}\n`),
  err: (s) => process.stderr.write(`${s}\n`),
};

/**
 * A runtime for offline use (validate, check --config, test): no background fetch is
 * awaited; `now` and `fetch` may be replaced (a test table's fixed clock and its keys).
 */
export function offlineRuntime(level = 'silent', opts: { now?: () => number; fetch?: FetchLike } = {}): Runtime {
  return {
    now: opts.now ?? (() => Date.now()),
    fetch: opts.fetch ?? ((input, init) => fetch(input, init)),
    logger: createLogger({ level, destination: process.stderr as never }),
    metrics: new Metrics(),
    shared: new SharedResources(),
  };
}
