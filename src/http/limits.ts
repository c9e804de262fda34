/**
 * Limits of the HTTP listener (metrics, health, the built-in STS). Node's defaults let a
 * client hold a connection for a minute by sending headers slowly and open as many as it
 * likes; the token endpoint verifies and signs tokens on the event loop that also answers
 * Checks. So: short header, request and body timeouts, a cap on connections (in total and per
 * client address), and a per-client token bucket in front of the token endpoint, plus a cap
 * on token requests in progress. Documented in docs/operations.md ("HTTP listener limits").
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpLimits {
  /** Whole request headers must arrive within this (Node: headersTimeout). */
  readonly headersTimeoutMs: number;
  /** Whole request (headers and body) must arrive within this (Node: requestTimeout). */
  readonly requestTimeoutMs: number;
  /** A request body must arrive within this once the headers are in. */
  readonly bodyTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** Open connections in total; more are closed at once. */
  readonly maxConnections: number;
  /** Open connections from one client address. */
  readonly maxConnectionsPerClient: number;
  /** Token-endpoint requests per second per client address (sustained) ... */
  readonly tokenRatePerSecond: number;
  /** ... and in a burst. */
  readonly tokenBurst: number;
  /** Token-endpoint requests per second of all clients together (many addresses flooding at once). */
  readonly tokenGlobalRatePerSecond: number;
  /** Token-endpoint requests being processed at once (all clients). */
  readonly tokenConcurrency: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = Object.freeze({
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  bodyTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 1_024,
  maxConnectionsPerClient: 64,
  tokenRatePerSecond: 20,
  tokenBurst: 40,
  tokenGlobalRatePerSecond: 200,
  tokenConcurrency: 16,
});

/** Apply the timeouts and connection caps to a listener (before it listens). */
export function applyServerLimits(server: Server, limits: HttpLimits): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxHeadersCount = 100;
  server.maxConnections = limits.maxConnections;
  const perClient = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const ip = socket.remoteAddress ?? '';
    const n = (perClient.get(ip) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      socket.destroy();
      return;
    }
    perClient.set(ip, n);
    socket.once('close', () => {
      const m = (perClient.get(ip) ?? 1) - 1;
      if (m <= 0) perClient.delete(ip);
      else perClient.set(ip, m);
    });
  });
}

/**
 * A token bucket per client address (at most `maxClients` remembered; the least recently
 * seen is forgotten first), one for all clients together, and a count of requests in
 * progress. The point is the Checks: token requests verify and sign on the event loop that
 * answers them, so what the endpoint may take of it is bounded whoever floods it.
 */
export class TokenRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly global: { tokens: number; at: number };
  private inflight = 0;

  constructor(
    private readonly limits: Pick<HttpLimits, 'tokenRatePerSecond' | 'tokenBurst' | 'tokenGlobalRatePerSecond' | 'tokenConcurrency'>,
    private readonly now: () => number = () => performance.now(),
    private readonly maxClients = 10_000,
  ) {
    this.global = { tokens: limits.tokenGlobalRatePerSecond, at: now() };
  }

  /** 0 when the request may go on (then call done() when it ends), else seconds to wait. */
  take(client: string): number {
    const t = this.now();
    let b = this.buckets.get(client);
    if (b) {
      this.buckets.delete(client);
      b.tokens = Math.min(this.limits.tokenBurst, b.tokens + ((t - b.at) / 1000) * this.limits.tokenRatePerSecond);
      b.at = t;
    } else {
      b = { tokens: this.limits.tokenBurst, at: t };
      if (this.buckets.size >= this.maxClients) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(client, b);
    if (b.tokens < 1) return Math.max(1, Math.ceil((1 - b.tokens) / this.limits.tokenRatePerSecond));
    const g = this.global;
    g.tokens = Math.min(this.limits.tokenGlobalRatePerSecond, g.tokens + ((t - g.at) / 1000) * this.limits.tokenGlobalRatePerSecond);
    g.at = t;
    if (g.tokens < 1 || this.inflight >= this.limits.tokenConcurrency) return 1;
    b.tokens -= 1;
    g.tokens -= 1;
    this.inflight++;
    return 0;
  }

  done(): void {
    this.inflight--;
  }
}
