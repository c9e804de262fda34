/**
 * What a login keeps between Checks (in runtime.shared, so a config reload keeps it):
 * the refreshes in flight (one per session at a time), the sessions refreshed a moment ago
 * (requests that still carry the old cookie get the new session and cookie instead of
 * refreshing again with a rotated refresh token), and the states of callbacks already used
 * (a replayed callback is refused). All bounded.
 */
import { SingleFlight } from '../net/single-flight.js';
import { LRUCache } from 'lru-cache';
import type { Runtime } from '../core/runtime.js';
import type { SessionRecord } from '../session/store.js';

export interface Refreshed {
  readonly fromVer: number;
  readonly rec: SessionRecord;
  /** Set-Cookie lines of the refreshed session (cookie store; empty for Redis). */
  readonly lines: readonly string[];
}

/** How long a refreshed session is handed to requests that still carry the previous one. */
export const RECENT_REFRESH_MS = 60_000;

export class LoginRuntime {
  private readonly flights = new SingleFlight();
  private readonly recent: LRUCache<string, Refreshed & { at: number }>;
  private readonly used: LRUCache<string, number>;

  constructor(
    private readonly runtime: Runtime,
    maxEntries: number,
  ) {
    this.recent = new LRUCache({ max: Math.max(16, maxEntries) });
    this.used = new LRUCache({ max: Math.max(1024, maxEntries * 4) });
  }

  /** Run `fn` once per key at a time; concurrent callers share its promise. */
  singleFlight<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.flights.run(key, fn);
  }

  rememberRefresh(sid: string, r: Refreshed): void {
    this.recent.set(sid, { ...r, at: this.runtime.now() });
  }

  /** The session that replaced version `ver` of `sid`, if it was refreshed a moment ago. */
  refreshedFrom(sid: string, ver: number): Refreshed | undefined {
    const r = this.recent.get(sid);
    if (!r || this.runtime.now() - r.at > RECENT_REFRESH_MS) return undefined;
    return r.fromVer === ver ? r : undefined;
  }

  /** Mark a callback state used; false when it already was (a replay). */
  claimState(stateHash: string, ttlMs: number): boolean {
    const now = this.runtime.now();
    const until = this.used.get(stateHash);
    if (until !== undefined && until > now) return false;
    this.used.set(stateHash, now + ttlMs);
    return true;
  }

  wasUsed(stateHash: string): boolean {
    const until = this.used.get(stateHash);
    return until !== undefined && until > this.runtime.now();
  }

  dispose(): void {
    this.flights.clear();
    this.recent.clear();
    this.used.clear();
  }
}
