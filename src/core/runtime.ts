/**
 * Long-lived collaborators injected into every stage: the clock, the network, the
 * logger, metrics and a registry of resources that survive config reloads (JWKS
 * sources, STS clients, caches), keyed so a reload with the same settings reuses them.
 */
import type { Logger } from 'pino';

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Label values of one metric sample: a closed set or config names, never request data. */
export type MetricLabels<L extends string> = Partial<Record<L, string | number>>;

/**
 * The metric instruments stages and libraries use, as interfaces: the Prometheus
 * implementation lives in observability/metrics.ts (the composition floor makes it and puts
 * it in the Runtime), so core depends on no library.
 */
export interface CounterInstrument<L extends string> {
  inc(labels?: MetricLabels<L> | number, value?: number): void;
  /** The child for fixed label values, kept by a caller that counts on the hot path. */
  labels(labels: MetricLabels<L>): { inc(value?: number): void };
}
export interface GaugeInstrument<L extends string> {
  set(labels: MetricLabels<L>, value: number): void;
}
export interface HistogramInstrument<L extends string> {
  observe(labels: MetricLabels<L> | number, value?: number): void;
}
export interface MetricsRegistry {
  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): CounterInstrument<L>;
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): GaugeInstrument<L>;
  histogram<L extends string>(name: string, help: string, labelNames: readonly L[], buckets?: number[]): HistogramInstrument<L>;
}

/** Where finished log lines go (each ends with '\n'). */
export interface LineSink {
  write(line: string): void;
}

/** A LineSink the server flushes (and closes, if it opened a file) on shutdown. */
export interface DecisionSink extends LineSink {
  flush?(): Promise<void>;
  close?(): Promise<void>;
}

/**
 * The configured secrets (client secrets, shared tokens, API keys, TokenReview credential):
 * a stage registers what it loads under a key (a reload replaces that key's values), and
 * every log line and decision-log detail is scrubbed of them (observability/redact.ts).
 */
export interface SecretRegistry {
  register(key: string, secrets: readonly string[]): void;
  /** `text` with every registered secret, in any of its encodings, replaced. */
  scrub(text: string): string;
}

export interface Runtime<M extends MetricsRegistry = MetricsRegistry> {
  /** Milliseconds since epoch. Tests inject a controllable clock. */
  now(): number;
  readonly fetch: FetchLike;
  readonly logger: Logger;
  /** Where decision lines go (observability/decision-log.ts); stdout when unset. */
  readonly decisionSink?: DecisionSink;
  readonly metrics: M;
  readonly shared: SharedResources;
  /** Configured secrets to redact from logs (absent: nothing registered, nothing scrubbed). */
  readonly secrets?: SecretRegistry;
}

export class SharedResources {
  private readonly map = new Map<string, { value: unknown; generation: number }>();
  private generation = 0;
  /** Keys created (not merely reused) by the generation being compiled. */
  private created = new Set<string>();

  /** Get the resource under `key`, creating it on first use; marks it used by the current generation. */
  get<T>(key: string, create: () => T): T {
    const hit = this.map.get(key);
    if (hit) {
      hit.generation = this.generation;
      return hit.value as T;
    }
    const value = create();
    this.map.set(key, { value, generation: this.generation });
    this.created.add(key);
    return value;
  }

  /** Start compiling a new config: resources not touched by it are released by `sweep`. */
  beginGeneration(): void {
    this.generation++;
    this.created = new Set();
  }

  /**
   * The config being compiled was rejected: dispose what it created (its JWKS sources,
   * file watchers, clients), so repeated invalid edits cannot pile up timers and fetches.
   * Resources it merely reused stay, since the config in force still uses them.
   */
  abortGeneration(): void {
    for (const k of this.created) {
      const v = this.map.get(k);
      const d = v?.value as { dispose?: () => void } | undefined;
      if (typeof d?.dispose === 'function') d.dispose();
      this.map.delete(k);
    }
    this.created = new Set();
  }

  /** The generation being (or last) compiled; pass it to sweepBefore once that config is in force. */
  get currentGeneration(): number {
    return this.generation;
  }

  /** Dispose resources the newest config no longer uses (bounded: no growth across reloads). */
  sweep(): void {
    this.sweepBefore(this.generation);
  }

  /**
   * Dispose resources last used by a generation older than `generation` (the config now in
   * force). Resources touched by a later, rejected compile are kept: the config in force may
   * still use them.
   */
  sweepBefore(generation: number): void {
    for (const [k, v] of this.map) {
      if (v.generation < generation) {
        const d = v.value as { dispose?: () => void };
        if (typeof d?.dispose === 'function') d.dispose();
        this.map.delete(k);
      }
    }
  }

  disposeAll(): void {
    for (const v of this.map.values()) {
      const d = v.value as { dispose?: () => void };
      if (typeof d?.dispose === 'function') d.dispose();
    }
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }

  /** Every live resource (the status endpoint asks those that report on themselves). */
  *values(): IterableIterator<unknown> {
    for (const v of this.map.values()) yield v.value;
  }
}
