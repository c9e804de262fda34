/** Test runtime: a controllable clock, the real fetch, a fresh metrics registry, captured logs. */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { SharedResources, type FetchLike, type Runtime } from '../../src/core/runtime.js';
import { SecretRedactor } from '../../src/observability/redact.js';
import { registerLogSink } from './secrets.js';

export interface TestRuntime extends Runtime<Metrics> {
  /** Every log line written, as text (assert that no secret appears). */
  readonly logs: string[];
  /** Set the clock (ms since epoch); undefined = real time. */
  setNow(ms: number | undefined): void;
  advance(ms: number): void;
}

export function createTestRuntime(opts: { now?: number; fetch?: FetchLike; level?: string } = {}): TestRuntime {
  const logs: string[] = [];
  registerLogSink(logs);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  let fixed: number | undefined = opts.now;
  const secrets = new SecretRedactor();
  const rt: TestRuntime = {
    now: () => fixed ?? Date.now(),
    fetch: opts.fetch ?? ((input, init) => fetch(input, init)),
    logger: createLogger({ level: opts.level ?? 'debug', destination: sink, redactor: secrets }),
    // Decision lines take the production path (hand-built lines) into the same capture.
    decisionSink: { write: (line: string) => void logs.push(line) },
    metrics: new Metrics(),
    shared: new SharedResources(),
    secrets,
    logs,
    setNow(ms) {
      fixed = ms;
    },
    advance(ms) {
      fixed = (fixed ?? Date.now()) + ms;
    },
  };
  return rt;
}
