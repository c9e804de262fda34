/**
 * What one CredentialValidator `type` brings to the kind's compile (credential-validator.ts
 * dispatches on `spec.type`): its spec block and schema, its checks of the shared fields,
 * its default issuer, and the compile of its chain member. Each type's definition lives in
 * the file of its member: jwt-rules-member.ts (JWT), api-keys.ts (APIKey), shared-token.ts
 * (SharedToken), kubernetes-sa.ts (KubernetesServiceAccount), edge.ts (EdgeHeaders).
 * A new type is a definition next to its member plus one row in credential-validator.ts.
 */
import type { Path } from '../config/issues.js';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { missingOutsideCluster } from '../config/outside-cluster.js';
import type { Schema } from '../config/schema.js';
import type { CredentialValidatorMember } from './chain.js';
import type { ClaimForwarding, CredentialLocation } from './credential-common.js';
import { DEFAULT_RELOAD_INTERVAL_MS, sharedMountedFile, type FileParser, type MountedFile, type SourceFile } from '../kubernetes/mounted-file.js';

/** The spec fields every type shares that some types refuse. */
export interface SharedSpec {
  readonly match?: unknown;
  readonly issuer?: string;
  readonly forwardClaims?: unknown;
}

export interface TypeCompileInput<B> {
  readonly k: KindDocument;
  readonly cc: CompileContext;
  /** The type's spec block as its schema parsed it. */
  readonly block: B;
  /** `namespace/name` of the document. */
  readonly ref: string;
  /** spec.issuer, else the type's default. */
  readonly issuer: string;
  readonly forwardClaims: ClaimForwarding | null;
  /** A path inside the type's block (`spec.<block>.…`), for issues. */
  at(...rest: (string | number)[]): Path;
}

/** A type's compiled part of a CredentialValidator: its member and how it reads requests. */
export interface TypeParts {
  /** null for `type: JWT` (the jwtRules member comes from RequestAuthentication) and after errors. */
  readonly member: CredentialValidatorMember | null;
  readonly locations: readonly CredentialLocation[];
  /** Headers where this member takes non-JWT-shaped values (APIKey, SharedToken). */
  readonly opaqueHeaders: readonly string[];
  /** Takes JWT-shaped values (KubernetesServiceAccount). */
  readonly takesJwt: boolean;
}

export interface ValidatorTypeDef<B = unknown> {
  /** The spec block holding this type's settings (`apiKey` ...); null: the type has none. */
  readonly block: string | null;
  readonly schema: Schema<B> | null;
  /** The issuer when spec.issuer is unset ('' = the credential carries its own). */
  defaultIssuer(k: KindDocument): string;
  /** Checks of the shared fields for this type, before anything is compiled. */
  checkShared?(spec: SharedSpec, k: KindDocument): void;
  /** The member; issues go to `k.v` (the document is dropped when any error was reported). */
  compile(x: TypeCompileInput<B>): TypeParts;
}

/** `<host>.obo-authz.dev/<namespace>/<name>`: the issuer of identities this server vouches for. */
export function localIssuer(host: string, k: KindDocument): string {
  return `${host}.obo-authz.dev/${k.namespace}/${k.name}`;
}

/**
 * The mounted `file` of a block that reads its secrets from one (APIKey, SharedToken),
 * resolved against the config file and re-read on use and in the background within
 * `reloadInterval`; a read or parse error is a config error at `file`.
 */
export function blockFile<T>(
  x: TypeCompileInput<{ file?: string; reloadInterval?: number }>,
  what: string,
  parse: FileParser<T>,
  secrets?: (files: readonly SourceFile[]) => readonly string[],
): MountedFile<T> {
  const path = x.cc.resolvePath(x.k.doc, x.block.file!);
  const { file, error } = sharedMountedFile(x.cc.runtime, path, parse, { what, intervalMs: x.block.reloadInterval ?? DEFAULT_RELOAD_INTERVAL_MS, background: true, ...(secrets ? { secrets } : {}) });
  // validate --ci: a Secret mounted only in the pod is a warning at `file`, not an error.
  if (error && !missingOutsideCluster(x.cc, x.k.v, x.at('file'), x.block.file!, path)) x.k.v.error(x.at('file'), error);
  return file;
}
