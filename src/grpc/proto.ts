/**
 * Loading our own wire-compatible .proto files (proto/), for grpc-js service definitions
 * and for proto3 JSON conversion in the CLI (`check --request`, output).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** Find proto/ next to the package root whether running from src/ (tsx/vitest) or dist/src/. */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'envoy', 'service', 'auth', 'v3', 'external_auth.proto'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('cannot find the proto/ folder of obo-authz');
}

export const EXT_AUTHZ_PROTO = 'envoy/service/auth/v3/external_auth.proto';
export const HEALTH_PROTO = 'grpc/health/v1/health.proto';

/**
 * Options shared by server and clients: snake_case field names (as on the wire), int64 as
 * strings, enums as numbers, no default-filling on decode (cheaper; absent = undefined).
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: Number,
  defaults: false,
  oneofs: true,
};

export interface LoadedProtos {
  readonly authorization: grpc.ServiceDefinition;
  readonly health: grpc.ServiceDefinition;
  readonly AuthorizationClient: grpc.ServiceClientConstructor;
  readonly HealthClient: grpc.ServiceClientConstructor;
}

let cached: LoadedProtos | undefined;

export function loadProtos(): LoadedProtos {
  if (cached) return cached;
  const dir = protoDir();
  const def = protoLoader.loadSync([EXT_AUTHZ_PROTO, HEALTH_PROTO], { ...LOADER_OPTIONS, includeDirs: [dir] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const Authorization = pkg.envoy.service.auth.v3.Authorization;
  const Health = pkg.grpc.health.v1.Health;
  cached = {
    authorization: Authorization.service,
    health: Health.service,
    AuthorizationClient: Authorization,
    HealthClient: Health,
  };
  return cached;
}

let root: protobuf.Root | undefined;

/** protobufjs reflection root (keepCase) for JSON conversion. */
export function protoRoot(): protobuf.Root {
  if (root) return root;
  const dir = protoDir();
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    const local = join(dir, target);
    if (existsSync(local)) return local;
    return target; // google/protobuf/* come from protobufjs' bundled common types
  };
  r.loadSync([EXT_AUTHZ_PROTO, HEALTH_PROTO], { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}
