/**
 * Long-lived collaborators injected into every stage: the clock, the network, the
 * logger, metrics and a registry of resources that survive config reloads (JWKS
 * sources, STS clients, caches), keyed so a reload with the same settings reuses them.
 */
import type { DecisionSink } from '../observability/decision-log.js';
import type { Logger } from 'pino';
import type { Metrics } from '../observability/metrics.js';

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Default cap on a remote response body (STS, TokenReview API): 1 MiB. */
export const MAX_RESPONSE_BYTES = 1 << 20;

/** A response body exceeded the byte cap: an unusable response, not an outage. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`response body larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/**
 * Read a fetch Response body as UTF-8, streaming, and stop (cancelling the stream) as
 * soon as it exceeds `limit` bytes — never buffers an unbounded body.
 */
export async function readCapped(res: Response, limit = MAX_RESPONSE_BYTES): Promise<string> {
  const body = res.body;
  if (!body) return '';
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export interface Runtime {
  /** Milliseconds since epoch. Tests inject a controllable clock. */
  now(): number;
  readonly fetch: FetchLike;
  readonly logger: Logger;
  /** Where decision lines go (observability/decision-log.ts); stdout when unset. */
  readonly decisionSink?: DecisionSink;
  readonly metrics: Metrics;
  readonly shared: SharedResources;
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
}
