/** Start the real server on loopback port 0 and talk to it with a real gRPC client. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { loadProtos } from '../../src/grpc/proto.js';
import type { RawCheckRequest } from '../../src/core/context.js';
import type { CheckResponseObject } from '../../src/respond/respond.js';
import { createTestRuntime, type TestRuntime } from './runtime.js';
import type { TestPki } from './certs.js';
import { removeTempDir, tempDir } from './tmp.js';

export interface TestServer {
  readonly server: RunningServer;
  readonly runtime: TestRuntime;
  readonly dir: string;
  readonly client: grpc.Client;
  readonly health: grpc.Client;
  check(req: RawCheckRequest, deadlineMs?: number): Promise<CheckResponseObject>;
  healthStatus(service?: string): Promise<number>;
  /** Stops the server, closes the clients and removes the config folder. */
  close(): Promise<void>;
}

/** Write `files` (name -> YAML) into a fresh temp folder and serve it. */
export async function startTestServer(
  files: Record<string, string>,
  opts: { watch?: boolean; httpAuthz?: boolean; runtime?: TestRuntime } = {},
): Promise<TestServer> {
  const dir = tempDir('obo-authz-test-');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const runtime = opts.runtime ?? createTestRuntime({ level: 'debug' });
  const server = await startServer({
    configPaths: [dir],
    grpcAddress: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    ...(opts.httpAuthz ? { httpAuthzAddress: '127.0.0.1:0' } : {}),
    runtime,
    watch: opts.watch ?? false,
    watchDebounceMs: 50,
    watchPollMs: 200,
  });
  const { AuthorizationClient, HealthClient } = loadProtos();
  const client = new AuthorizationClient(server.grpcAddress, grpc.credentials.createInsecure());
  const health = new HealthClient(server.grpcAddress, grpc.credentials.createInsecure());
  return {
    server,
    runtime,
    dir,
    client,
    health,
    check(req, deadlineMs = 5000) {
      return new Promise((resolve, reject) => {
        (client as unknown as Record<string, Function>)['Check']!(
          req,
          { deadline: Date.now() + deadlineMs },
          (err: grpc.ServiceError | null, resp: CheckResponseObject) => (err ? reject(err) : resolve(resp)),
        );
      });
    },
    healthStatus(service = '') {
      return new Promise((resolve, reject) => {
        (health as unknown as Record<string, Function>)['Check']!({ service }, (err: grpc.ServiceError | null, resp: { status: number }) =>
          err ? reject(err) : resolve(resp.status),
        );
      });
    },
    async close() {
      client.close();
      health.close();
      await server.close();
      removeTempDir(dir);
    },
  };
}

/** A CheckRequest as Envoy sends it, in the snake_case object shape grpc-js uses. */
export function httpRequest(opts: {
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
  contextExtensions?: Record<string, string>;
  sourceIp?: string;
  sourcePrincipal?: string;
  destinationPrincipal?: string;
  id?: string;
}): RawCheckRequest {
  const method = opts.method ?? 'GET';
  const path = opts.path ?? '/';
  const host = opts.host ?? 'mcp.example.com';
  return {
    attributes: {
      source: {
        address: { socket_address: { address: opts.sourceIp ?? '10.0.0.7', port_value: 40000 } },
        principal: opts.sourcePrincipal ?? '',
      },
      destination: {
        address: { socket_address: { address: '10.0.0.9', port_value: 8080 } },
        principal: opts.destinationPrincipal ?? '',
      },
      request: {
        http: {
          id: opts.id ?? 'req-1',
          method,
          path,
          host,
          scheme: 'https',
          protocol: 'HTTP/1.1',
          headers: { ':method': method, ':path': path, ':authority': host, ...(opts.headers ?? {}) },
        },
      },
      context_extensions: opts.contextExtensions ?? {},
    },
  };
}

/** Headers set on an allow, as a name -> value map (asserts the overwrite semantics on each). */
export function setHeaders(resp: CheckResponseObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of resp.ok_response?.headers ?? []) {
    // BoolValue(false) is an empty message on the wire: present, value unset.
    if (!h.append || h.append.value === true || h.append_action !== 2) throw new Error(`header ${h.header.key} not set with overwrite`);
    out[h.header.key] = h.header.value;
  }
  return out;
}

/** The real server on a config folder, every listener with TLS and client certificates of `pki` required. */
export function startTlsServer(dir: string, pki: TestPki): Promise<RunningServer> {
  return startServer({
    configPaths: [dir],
    grpcAddress: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    runtime: createTestRuntime(),
    watch: false,
    tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.caCert },
  });
}
