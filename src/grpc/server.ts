/**
 * The gRPC side: envoy.service.auth.v3.Authorization/Check and grpc.health.v1.Health.
 * Check never fails the RPC: every outcome, including internal errors and deadlines,
 * is an explicit CheckResponse (Envoy would otherwise apply failure_mode_allow).
 */
import * as grpc from '@grpc/grpc-js';
import type { CompiledConfig } from '../pipeline/compile.js';
import type { DecisionSink } from '../observability/decision-log.js';
import type { RawCheckRequest } from '../core/context.js';
import type { Decision } from '../core/decision.js';
import { evaluateCheck } from '../pipeline/pipeline.js';
import { CheckRecorder } from '../pipeline/recorder.js';
import { REASONS } from '../core/reasons.js';
import type { ServerRuntime as Runtime } from '../observability/metrics.js';
import { toCheckResponse, type CheckResponseObject } from '../respond/respond.js';
import { checkRequestDeserializer } from './decode-request.js';
import { encodeCheckResponse } from './encode-response.js';
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
  /** Where decision lines go (default: runtime.decisionSink, else stdout). */
  readonly decisionSink?: DecisionSink;
}

export function createGrpcServer(state: ServingState, runtime: Runtime, opts: GrpcServerOptions = {}): grpc.Server {
  const protos = loadProtos();
  const recorder = new CheckRecorder(runtime, 'grpc', opts.decisionSink);
  runtime.metrics.trackInflight(() => state.inflight);
  const server = new grpc.Server({
    'grpc.max_concurrent_streams': opts.maxConcurrentStreams ?? 1000,
    'grpc.keepalive_permit_without_calls': 1,
  });

  const reasonHeader = (cfg: CompiledConfig | null) => cfg?.settings.reasonHeader ?? false;

  /** Decision -> response, metrics, decision log; then the answer. */
  const answer = (d: Decision, cfg: CompiledConfig | null, start: number, callback: grpc.sendUnaryData<CheckResponseObject>): void => {
    let resp: CheckResponseObject;
    try {
      resp = toCheckResponse(d, { reasonHeader: reasonHeader(cfg) });
      recorder.record(cfg, d, performance.now() - start);
    } catch (e) {
      // Nothing above should throw; if it does, the Check is still answered, with a deny.
      resp = internalError(e);
    }
    state.leave();
    callback(null, resp);
  };

  const internalError = (e: unknown): CheckResponseObject => {
    runtime.logger.error({ err: e instanceof Error ? e.name : 'unknown' }, 'check failed unexpectedly');
    recorder.count(false, 'ERR_INTERNAL');
    return {
      status: { code: 13, message: 'ERR_INTERNAL' },
      denied_response: { status: { code: REASONS.ERR_INTERNAL.http }, headers: [], body: REASONS.ERR_INTERNAL.body },
      dynamic_metadata: { fields: { reason: { stringValue: 'ERR_INTERNAL' } } },
    };
  };

  // Check's requests and responses through our own (de)serializer (the same objects and bytes
  // as proto-loader's, a fraction of its cost); the shared definition, which clients in this
  // process may use, is left alone.
  const check = protos.authorization.Check!;
  const authorization: grpc.ServiceDefinition = {
    ...protos.authorization,
    Check: {
      ...check,
      requestDeserialize: checkRequestDeserializer(check.requestDeserialize),
      responseSerialize: encodeCheckResponse as (v: unknown) => Buffer,
    },
  };
  server.addService(authorization, {
    Check(call: grpc.ServerUnaryCall<RawCheckRequest, CheckResponseObject>, callback: grpc.sendUnaryData<CheckResponseObject>) {
      const start = performance.now();
      state.enter();
      const cfg = state.config;
      let r: Decision | Promise<Decision>;
      try {
        r = evaluateCheck(call.request, cfg, runtime, { deadline: deadlineOf(call) });
      } catch (e) {
        // evaluateCheck() never throws; this is a last line of defence that still denies.
        state.leave();
        callback(null, internalError(e));
        return;
      }
      // A cached-token Check is answered in this tick; one that went asynchronous later.
      if (!(r instanceof Promise)) answer(r, cfg, start, callback);
      else
        r.then(
          (d) => answer(d, cfg, start, callback),
          (e: unknown) => {
            state.leave();
            callback(null, internalError(e));
          },
        );
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
