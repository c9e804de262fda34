/**
 * `obo-authz check`: evaluate one CheckRequest offline (--config) or send it to a server
 * (--server). Prints the CheckResponse as proto3 JSON; --explain adds a trace of every
 * stage on stderr. Exit 0 allowed, 1 denied, 2 usage, request file, config or connection error.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { LineCounter, parseAllDocuments } from 'yaml';
import { loadConfig } from '../pipeline/compile.js';
import { formatIssue } from '../config/issues.js';
import { parseDuration } from '../config/schema.js';
import { fromProto3Json, toProto3Json } from '../grpc/json.js';
import { loadProtos } from '../grpc/proto.js';
import { checkMessage, MessageFieldError } from '../grpc/strict-json.js';
import type { RawCheckRequest } from '../core/context.js';
import type { Decision } from '../core/decision.js';
import { evaluate } from '../pipeline/pipeline.js';
import { toCheckResponse, type CheckResponseObject } from '../respond/respond.js';
import { listFlag, runWithSpec, stringFlag, UsageError, type Parsed } from './args.js';
import { clientTls, explainConnectError, type ClientTls } from './connect.js';
import { offlineRuntime, type Io } from './io.js';
import { CHECK } from './specs.js';

export const CHECK_REQUEST = 'envoy.service.auth.v3.CheckRequest';
export const CHECK_RESPONSE = 'envoy.service.auth.v3.CheckResponse';

/** A request file that cannot be used: its name, and the field at fault when there is one. */
export class RequestFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'RequestFileError';
  }
}

const ATTRIBUTE_KEYS = ['source', 'destination', 'request', 'contextExtensions', 'context_extensions', 'metadataContext', 'tlsSession'];

/** Check a parsed request value strictly and convert it; `skipped` gets the Envoy-only fields. */
export function checkRequestValue(value: unknown, file: string, skipped: string[] = []): RawCheckRequest {
  if (value && typeof value === 'object' && !Array.isArray(value) && !('attributes' in value) && Object.keys(value).some((k) => ATTRIBUTE_KEYS.includes(k))) {
    throw new RequestFileError(file, 'this is an AttributeContext: a CheckRequest holds it under "attributes:" (see docs/cli.md#request-files)');
  }
  try {
    skipped.push(...checkMessage(CHECK_REQUEST, value));
  } catch (e) {
    if (e instanceof MessageFieldError) throw new RequestFileError(file, e.message);
    throw e;
  }
  return fromProto3Json(CHECK_REQUEST, value) as RawCheckRequest;
}

/** Read a CheckRequest file (JSON or YAML, proto3 JSON or snake_case names), strictly. */
export function readCheckRequest(file: string, skipped: string[] = []): RawCheckRequest {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new RequestFileError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let value: unknown;
  if (file.endsWith('.json')) {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new RequestFileError(file, `not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
  } else {
    const lines = new LineCounter();
    const docs = parseAllDocuments(text, { prettyErrors: false, lineCounter: lines });
    const list = Array.isArray(docs) ? docs : [];
    if (list.length !== 1) throw new RequestFileError(file, list.length === 0 ? 'the file is empty' : 'expected one YAML document (one CheckRequest)');
    const err = list[0]!.errors[0];
    if (err) throw new RequestFileError(file, `YAML syntax error at line ${lines.linePos(err.pos[0]).line}: ${err.message.split('\n')[0]}`);
    value = list[0]!.toJS();
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new RequestFileError(file, 'expected a CheckRequest (a map with "attributes")');
  return checkRequestValue(value, file, skipped);
}

export interface CheckArgs {
  readonly configPaths: readonly string[];
  readonly server?: string;
  readonly request: string;
  readonly explain: boolean;
  readonly timeoutMs: number;
  readonly tls?: ClientTls;
}

function describeMetadata(resp: CheckResponseObject): string {
  const j = toProto3Json(CHECK_RESPONSE, resp) as { dynamicMetadata?: Record<string, unknown> };
  return JSON.stringify(j.dynamicMetadata ?? {});
}

/** The --explain text of an offline decision. */
export function explainText(d: Decision): string {
  const lines = (d.trace?.entries ?? []).map((e) => `  [${e.stage}] ${e.message}`);
  return [
    `decision: ${d.allow ? 'ALLOW' : 'DENY'} (${d.reason}${d.allow ? '' : `, HTTP ${d.httpStatus}`})`,
    ...(d.attribution.policy ? [`decided by: ${d.attribution.policy}${d.attribution.rule !== undefined ? ` rule ${d.attribution.rule}` : ''}`] : []),
    `why: ${d.message}`,
    'trace:',
    ...lines,
  ].join('\n');
}

export async function runCheck(args: CheckArgs, io: Io): Promise<number> {
  let req: RawCheckRequest;
  const skipped: string[] = [];
  try {
    req = readCheckRequest(args.request, skipped);
  } catch (e) {
    io.err(e instanceof Error ? e.message : String(e));
    return 2;
  }
  if (args.explain && skipped.length > 0) io.err(`note: Envoy fields obo-authz does not read were skipped: ${skipped.join(', ')}`);
  let resp: CheckResponseObject;
  if (args.server) {
    try {
      resp = await sendCheck(args.server, req, args.timeoutMs, args.tls);
    } catch (e) {
      io.err(`obo-authz check: ${explainConnectError(args.server, e instanceof Error ? e.message : String(e), !!args.tls)}`);
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
      if (args.explain && d.trace) io.err(explainText(d));
    } finally {
      runtime.shared.disposeAll();
    }
  }
  io.out(JSON.stringify(toProto3Json(CHECK_RESPONSE, resp), null, 2));
  return resp.status.code === 0 ? 0 : 1;
}

/** gRPC channel credentials for the --tls-* flags. */
export function channelCredentials(tls: ClientTls | undefined): grpc.ChannelCredentials {
  return tls ? grpc.credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null) : grpc.credentials.createInsecure();
}

/** Send one Check; `tls` may be a CA file path (older callers) or the --tls-* settings. */
export function sendCheck(server: string, req: RawCheckRequest, timeoutMs: number, tls?: ClientTls | string): Promise<CheckResponseObject> {
  const t: ClientTls | undefined = typeof tls === 'string' ? { ca: readFileSync(tls) } : tls;
  const { AuthorizationClient } = loadProtos();
  const client = new AuthorizationClient(server, channelCredentials(t), t?.serverName ? { 'grpc.ssl_target_name_override': t.serverName } : {});
  return new Promise<CheckResponseObject>((resolve, reject) => {
    client['Check']!(req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, resp: CheckResponseObject) => {
      client.close();
      if (err) reject(new Error(`${grpc.status[err.code] ?? err.code}: ${err.details}`));
      else resolve(resp);
    });
  });
}

async function check(p: Parsed, io: Io): Promise<number> {
  const v = p.values;
  const request = stringFlag(v, 'request');
  const server = stringFlag(v, 'server');
  const configPaths = listFlag(v, 'config');
  if (!request) throw new UsageError('needs --request FILE');
  if (!server && configPaths.length === 0) throw new UsageError('needs --config PATH (offline) or --server HOST:PORT');
  if (server && configPaths.length > 0) throw new UsageError('takes --config or --server, not both');
  const tls = clientTls(v);
  if (tls && !server) throw new UsageError('--tls-ca and the other --tls-* options go with --server');
  const timeout = stringFlag(v, 'timeout')!;
  const timeoutMs = parseDuration(timeout);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError(`--timeout ${JSON.stringify(timeout)}: expected a duration such as 500ms or 5s`);
  return runCheck({ configPaths, ...(server ? { server } : {}), request, explain: v['explain'] === true, timeoutMs, ...(tls ? { tls } : {}) }, io);
}

export function checkCommand(argv: readonly string[], io: Io): Promise<number> {
  return runWithSpec(CHECK, argv, io, check);
}
