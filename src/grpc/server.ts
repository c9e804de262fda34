/**
 * The gRPC side: envoy.service.auth.v3.Authorization/Check and grpc.health.v1.Health.
 * Check never fails the RPC: every outcome, including internal errors and deadlines,
 * is an explicit CheckResponse (Envoy would otherwise apply failure_mode_allow).
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../config/compile.js';
import { DecisionLog } from '../observability/decision-log.js';
import type { RawCheckRequest } from '../pipeline/context.js';
import { evaluate } from '../pipeline/pipeline.js';
import type { Runtime } from '../pipeline/runtime.js';
import { toCheckResponse, type CheckResponseObject } from '../respond/respond.js';
import { loadProtos } from './proto.js';

export const AUTHORIZATION_SERVICE = 'envoy.service.auth.v3.Authorization';

export const SERVING_STATUS = { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } as const;

/** What the server is serving right now; swapped atomically on reload. */
export class ServingState {
  private cfg: CompiledConfig | null = null;
  private drain = false;
  private readonly watchers = new Set<() => void>();
  inflight = 0;
  private idleWaiters: (() => void)[] = [];

  get config(): CompiledConfig | null {
    return this.cfg;
  }
  set config(c: CompiledConfig | null) {
    const before = this.serving;
    this.cfg = c;
    if (before !== this.serving) this.notify();
  }
  get draining(): boolean {
    return this.drain;
  }
  startDraining(): void {
    if (this.drain) return;
    this.drain = true;
    this.notify();
  }
  get serving(): boolean {
    return this.cfg !== null && !this.drain;
  }
  onChange(fn: () => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }
  private notify(): void {
    for (const w of this.watchers) w();
  }
  enter(): void {
    this.inflight++;
  }
  leave(): void {
    this.inflight--;
    if (this.inflight === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }
  /** Resolves when no Check is in flight. */
  idle(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  const d = call.getDeadline();
  if (d instanceof Date) return d.getTime();
  if (typeof d === 'number' && Number.isFinite(d)) return d;
  return undefined;
}

export interface GrpcServerOptions {
  readonly maxConcurrentStreams?: number;
  /** Where decision lines go (default: the main logger, i.e. stdout). */
  readonly decisionLogger?: Logger;
}

export function createGrpcServer(state: ServingState, runtime: Runtime, opts: GrpcServerOptions = {}): grpc.Server {
  const protos = loadProtos();
  const decisionLog = new DecisionLog(opts.decisionLogger ?? runtime.decisionLogger ?? runtime.logger);
  const m = runtime.metrics;
  // Label children resolved once per (decision, reason): both come from closed sets, and
  // resolving labels on every Check (hashing the label object) is measurable per-Check cost.
  const checkChildren = new Map<string, { inc(): void }>();
  const checkCounter = (decision: string, reason: string) => {
    const k = `${decision}|${reason}`;
    let c = checkChildren.get(k);
    if (!c) {
      c = m.checks.labels(decision, reason);
      checkChildren.set(k, c);
    }
    return c;
  };
  const durationAllow = m.checkDuration.labels('allow');
  const durationDeny = m.checkDuration.labels('deny');
  const server = new grpc.Server({
    'grpc.max_concurrent_streams': opts.maxConcurrentStreams ?? 1000,
    'grpc.keepalive_permit_without_calls': 1,
  });

  server.addService(protos.authorization, {
    Check(call: grpc.ServerUnaryCall<RawCheckRequest, CheckResponseObject>, callback: grpc.sendUnaryData<CheckResponseObject>) {
      const start = process.hrtime.bigint();
      state.enter();
      m.inflight.inc();
      const cfg = state.config;
      evaluate(call.request, cfg, runtime, { deadline: deadlineOf(call) })
        .then((d) => {
          const resp = toCheckResponse(d, { reasonHeader: cfg?.settings.reasonHeader ?? false });
          const seconds = Number(process.hrtime.bigint() - start) / 1e9;
          const decision = resp.status.code === 0 ? 'allow' : 'deny';
          checkCounter(decision, d.allow && resp.status.code !== 0 ? 'ERR_BAD_REQUEST' : d.reason).inc();
          (decision === 'allow' ? durationAllow : durationDeny).observe(seconds);
          if (cfg) decisionLog.record(cfg.settings, d, seconds * 1000);
          callback(null, resp);
        })
        .catch((e: unknown) => {
          // evaluate() never rejects; this is a last line of defence that still denies.
          runtime.logger.error({ err: e instanceof Error ? e.name : 'unknown' }, 'check failed unexpectedly');
          m.checks.inc({ decision: 'deny', reason: 'ERR_INTERNAL' });
          callback(null, {
            status: { code: 13, message: 'ERR_INTERNAL' },
            denied_response: { status: { code: 500 }, headers: [], body: 'ext_authz: internal error' },
            dynamic_metadata: { fields: { reason: { stringValue: 'ERR_INTERNAL' } } },
          });
        })
        .finally(() => {
          m.inflight.dec();
          state.leave();
        });
    },
  });

  const statusFor = (service: string): number | undefined => {
    if (service === '' || service === AUTHORIZATION_SERVICE) {
      return state.serving ? SERVING_STATUS.SERVING : SERVING_STATUS.NOT_SERVING;
    }
    return undefined;
  };

  server.addService(protos.health, {
    Check(call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>, callback: grpc.sendUnaryData<{ status: number }>) {
      const s = statusFor(call.request.service ?? '');
      if (s === undefined) callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else callback(null, { status: s });
    },
    Watch(call: grpc.ServerWritableStream<{ service?: string }, { status: number }>) {
      const service = call.request.service ?? '';
      let last = -1;
      const send = () => {
        const s = statusFor(service) ?? SERVING_STATUS.SERVICE_UNKNOWN;
        if (s !== last) {
          last = s;
          call.write({ status: s });
        }
      };
      send();
      const off = state.onChange(send);
      call.on('cancelled', off);
      call.on('close', off);
      call.on('error', off);
    },
  });
  return server;
}
