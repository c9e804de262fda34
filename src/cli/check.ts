/**
 * `obo-authz check`: evaluate one CheckRequest offline (--config) or send it to a server
 * (--server). Prints the CheckResponse as proto3 JSON; --explain adds a trace of every
 * stage on stderr. Exit 0 allowed, 1 denied, 2 usage/config error.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../pipeline/compile.js';
import { formatIssue } from '../config/issues.js';
import { fromProto3Json, toProto3Json } from '../grpc/json.js';
import { loadProtos } from '../grpc/proto.js';
import type { RawCheckRequest } from '../core/context.js';
import { evaluate } from '../pipeline/pipeline.js';
import { toCheckResponse, type CheckResponseObject } from '../respond/respond.js';
import { offlineRuntime, type Io } from './validate.js';

export const CHECK_REQUEST = 'envoy.service.auth.v3.CheckRequest';
export const CHECK_RESPONSE = 'envoy.service.auth.v3.CheckResponse';

export function readCheckRequest(file: string, ignored: string[] = []): RawCheckRequest {
  const text = readFileSync(file, 'utf8');
  const value: unknown = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  return fromProto3Json(CHECK_REQUEST, value, ignored) as RawCheckRequest;
}

export interface CheckArgs {
  readonly configPaths: readonly string[];
  readonly server?: string;
  readonly request: string;
  readonly explain: boolean;
  readonly timeoutMs: number;
  readonly tlsCa?: string;
}

function describeMetadata(resp: CheckResponseObject): string {
  const j = toProto3Json(CHECK_RESPONSE, resp) as { dynamicMetadata?: Record<string, unknown> };
  return JSON.stringify(j.dynamicMetadata ?? {});
}

export async function runCheck(args: CheckArgs, io: Io): Promise<number> {
  let req: RawCheckRequest;
  const ignored: string[] = [];
  try {
    req = readCheckRequest(args.request, ignored);
  } catch (e) {
    io.err(`${args.request}: cannot read CheckRequest: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  if (args.explain && ignored.length > 0) io.err(`note: fields obo-authz does not read were skipped: ${ignored.join(', ')}`);
  let resp: CheckResponseObject;
  if (args.server) {
    try {
      resp = await sendCheck(args.server, req, args.timeoutMs, args.tlsCa);
    } catch (e) {
      io.err(`check --server ${args.server}: ${e instanceof Error ? e.message : String(e)}`);
      return 2;
    }
    if (args.explain) io.err(`server decision metadata: ${describeMetadata(resp)} (a full trace is available offline with --config)`);
  } else {
    const runtime = offlineRuntime();
    try {
      const r = loadConfig(args.configPaths, runtime);
      if (!r.ok) {
        for (const i of r.issues) io.err(formatIssue(i));
        return 2;
      }
      const d = await evaluate(req, r.config, runtime, { explain: args.explain, deadline: Date.now() + args.timeoutMs });
      resp = toCheckResponse(d, { reasonHeader: r.config.settings.reasonHeader });
      if (args.explain && d.trace) {
        const lines = d.trace.entries.map((e) => `  [${e.stage}] ${e.message}`);
        io.err(
          [
            `decision: ${d.allow ? 'ALLOW' : 'DENY'} (${d.reason}${d.allow ? '' : `, HTTP ${d.httpStatus}`})`,
            ...(d.attribution.policy ? [`decided by: ${d.attribution.policy}${d.attribution.rule !== undefined ? ` rule ${d.attribution.rule}` : ''}`] : []),
            `why: ${d.message}`,
            'trace:',
            ...lines,
          ].join('\n'),
        );
      }
    } finally {
      runtime.shared.disposeAll();
    }
  }
  io.out(JSON.stringify(toProto3Json(CHECK_RESPONSE, resp), null, 2));
  return resp.status.code === 0 ? 0 : 1;
}

export function sendCheck(server: string, req: RawCheckRequest, timeoutMs: number, tlsCa?: string): Promise<CheckResponseObject> {
  const { AuthorizationClient } = loadProtos();
  const creds = tlsCa ? grpc.credentials.createSsl(readFileSync(tlsCa)) : grpc.credentials.createInsecure();
  const client = new AuthorizationClient(server, creds);
  return new Promise<CheckResponseObject>((resolve, reject) => {
    client['Check']!(req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, resp: CheckResponseObject) => {
      client.close();
      if (err) reject(new Error(`${grpc.status[err.code] ?? err.code}: ${err.details}`));
      else resolve(resp);
    });
  });
}
