/** The config kinds obo-authz accepts, and the typed view of one document handed to a stage compiler. */
import type { LoadedDocument } from './loader.js';
import type { Metadata } from './schema.js';
import type { ValidationContext } from './schema.js';
import type { Settings } from './settings.js';
import type { Runtime } from '../core/runtime.js';

export const ISTIO_SECURITY_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;
export const OBO_VERSION = 'obo-authz.dev/v1alpha1';

export type KindName =
  | 'RequestAuthentication'
  | 'AuthorizationPolicy'
  | 'Settings'
  | 'TokenExchangePolicy'
  | 'SecurityTokenService'
  | 'DelegationPolicy'
  | 'CredentialValidator'
  | 'OIDCLogin'
  | 'MCPServer';

export const KIND_VERSIONS: Record<KindName, readonly string[]> = {
  RequestAuthentication: ISTIO_SECURITY_VERSIONS,
  AuthorizationPolicy: ISTIO_SECURITY_VERSIONS,
  Settings: [OBO_VERSION],
  TokenExchangePolicy: [OBO_VERSION],
  SecurityTokenService: [OBO_VERSION],
  DelegationPolicy: [OBO_VERSION],
  CredentialValidator: [OBO_VERSION],
  OIDCLogin: [OBO_VERSION],
  MCPServer: [OBO_VERSION],
};

/** One validated document of a kind, with its effective namespace; `spec` is parsed by the stage. */
export interface KindDocument {
  readonly doc: LoadedDocument;
  readonly kind: KindName;
  readonly metadata: Metadata;
  /** metadata.namespace or Settings.defaultNamespace. */
  readonly namespace: string;
  readonly name: string;
  /** `namespace/name`, the stable reference used in logs, metrics and dynamic_metadata. */
  readonly ref: string;
  /** Raw spec value (undefined when absent). */
  readonly spec: unknown;
  /** Report issues located in this document. */
  readonly v: ValidationContext;
}

/** What a stage's compile function gets besides its documents: the server settings and the runtime. */
export interface CompileContext {
  readonly settings: Settings;
  readonly runtime: Runtime;
  /** Resolve a file path written in `doc` relative to that document's file. */
  resolvePath(doc: LoadedDocument, p: string): string;
  /** Checked outside the cluster (validate --ci): pod-only files and API servers are warnings (config/outside-cluster.ts). */
  readonly outsideCluster?: boolean;
}
