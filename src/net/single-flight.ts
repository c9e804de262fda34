/**
 * One call per key at a time: concurrent callers for the same key share the promise of the
 * call in progress (an STS exchange, a session refresh), so N simultaneous Checks make one
 * remote call. The entry is dropped when the call settles, whatever its outcome.
 */
export class SingleFlight {
  private readonly inflight = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const hit = this.inflight.get(key);
    if (hit) return hit as Promise<T>;
    const p = fn().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  get size(): number {
    return this.inflight.size;
  }

  clear(): void {
    this.inflight.clear();
  }
}
