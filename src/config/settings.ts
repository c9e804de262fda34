/** The server-wide `Settings` kind (obo-authz.dev/v1alpha1). At most one per config. */
import { finishHttpAuthz, httpAuthzSchema, type HttpAuthzSettings } from './http-authz-settings.js';
import { bool, duration, num, obj, record, str, type ValidationContext } from './schema.js';
import { PATH_NORMALIZATIONS, type PathNormalization } from '../core/path.js';

export interface Settings {
  /** Policies here apply to every workload (Istio's root namespace). */
  readonly rootNamespace: string;
  /** Namespace of documents without metadata.namespace, and of requests with none. */
  readonly defaultNamespace: string;
  /** Labels of the workload this instance guards (sidecar mode), used when a request carries none. */
  readonly workloadLabels: Readonly<Record<string, string>>;
  /** x-forwarded-for hops to trust when deriving `remote.ip` (Envoy xff_num_trusted_hops). */
  readonly trustedProxyHops: number;
  /** Status for ERR_JWKS_UNAVAILABLE: 503 (default, IdP down) or 401 (Envoy's behaviour). */
  readonly jwksUnavailableStatus: 401 | 503;
  /** Answer this long before the caller's gRPC deadline with an explicit 503. */
  readonly deadlineMarginMs: number;
  /** Deadline used when the caller sends no grpc-timeout (Istio's provider default is 600 s). */
  readonly defaultTimeoutMs: number;
  /** After SIGTERM: keep answering (health NOT_SERVING) this long before draining. */
  readonly shutdownGracePeriodMs: number;
  /** Opt-in `x-obo-authz-reason` header on denies carrying the reason code. */
  readonly reasonHeader: boolean;
  readonly decisionLog: {
    readonly enabled: boolean;
    /** Fraction of allowed decisions logged (denies are always logged). */
    readonly allowSampleRate: number;
    /** The client address logged: `remote` (remote.ip, x-forwarded-for with trustedProxyHops), `peer` (the socket peer) or `none`. */
    readonly clientAddress: 'remote' | 'peer' | 'none';
  };
  /** JWKS refresh/outage tuning overrides in ms (defaults in src/jwt/jwks-source.ts). */
  readonly jwks: Readonly<Partial<JwksTuningMs>>;
  /** The HTTP authorization transport (config/http-authz-settings.ts); null when the block is absent. */
  readonly httpAuthz: HttpAuthzSettings | null;
  /**
   * The path normalization the proxy applies (Istio MeshConfig pathNormalization); a path
   * not in that canonical form is refused with ERR_PATH_NOT_CANONICAL (core/path.ts).
   */
  readonly pathNormalization: PathNormalization;
}

export interface JwksTuningMs {
  refreshIntervalMs: number;
  minRefreshIntervalMs: number;
  maxRefreshIntervalMs: number;
  staleMaxMs: number;
  kidMissCooldownMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

export const DEFAULT_SETTINGS: Settings = Object.freeze({
  rootNamespace: 'istio-system',
  defaultNamespace: 'default',
  workloadLabels: Object.freeze({}),
  trustedProxyHops: 0,
  jwksUnavailableStatus: 503,
  deadlineMarginMs: 20,
  defaultTimeoutMs: 10_000,
  shutdownGracePeriodMs: 5_000,
  reasonHeader: false,
  decisionLog: Object.freeze({ enabled: true, allowSampleRate: 1, clientAddress: 'remote' }),
  jwks: Object.freeze({}),
  httpAuthz: null,
  pathNormalization: 'DECODE_AND_MERGE_SLASHES',
}) as Settings;

interface SettingsSpec {
  rootNamespace?: string;
  defaultNamespace?: string;
  workloadLabels?: Record<string, string>;
  trustedProxyHops?: number;
  jwksUnavailableStatus?: number;
  deadlineMargin?: number;
  defaultTimeout?: number;
  shutdownGracePeriod?: number;
  reasonHeader?: boolean;
  decisionLog?: { enabled?: boolean; allowSampleRate?: number; clientAddress?: 'remote' | 'peer' | 'none' };
  jwks?: Record<string, number>;
  httpAuthz?: Parameters<typeof finishHttpAuthz>[0];
  pathNormalization?: { normalization?: string };
}

const NS = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

const settingsSpec = obj<SettingsSpec>({
  rootNamespace: str({ nonEmpty: true, pattern: NS, patternHint: 'must be a namespace name' }),
  defaultNamespace: str({ nonEmpty: true, pattern: NS, patternHint: 'must be a namespace name' }),
  workloadLabels: record(str()),
  trustedProxyHops: num({ int: true, min: 0, max: 32 }),
  jwksUnavailableStatus: num({ int: true }),
  deadlineMargin: duration({ minMs: 0, maxMs: 1000 }),
  defaultTimeout: duration({ minMs: 1, maxMs: 600_000 }),
  shutdownGracePeriod: duration({ minMs: 0, maxMs: 600_000 }),
  reasonHeader: bool(),
  decisionLog: obj({ enabled: bool(), allowSampleRate: num({ min: 0, max: 1 }), clientAddress: str({ enum: ['remote', 'peer', 'none'] }) }),
  jwks: obj({
    refreshInterval: duration({ minMs: 1000 }),
    minRefreshInterval: duration({ minMs: 1000 }),
    maxRefreshInterval: duration({ minMs: 1000 }),
    staleMax: duration({ minMs: 0 }),
    kidMissCooldown: duration({ minMs: 0 }),
    retryInitial: duration({ minMs: 10 }),
    retryMax: duration({ minMs: 10 }),
  }),
  httpAuthz: httpAuthzSchema,
  // Istio's shape: meshConfig.pathNormalization.normalization (DEFAULT is BASE there too).
  pathNormalization: obj({
    normalization: str({ enum: ['DEFAULT', ...PATH_NORMALIZATIONS] }),
  }),
});

export function parseSettings(spec: unknown, ctx: ValidationContext): Settings | undefined {
  const s = settingsSpec.parse(spec ?? {}, ['spec'], ctx);
  if (!s) return undefined;
  const j = s.jwks ?? {};
  if (j['minRefreshInterval'] !== undefined && j['maxRefreshInterval'] !== undefined && j['minRefreshInterval'] > j['maxRefreshInterval']) {
    ctx.error(['spec', 'jwks', 'minRefreshInterval'], 'must not exceed maxRefreshInterval');
    return undefined;
  }
  if (s.jwksUnavailableStatus !== undefined && s.jwksUnavailableStatus !== 401 && s.jwksUnavailableStatus !== 503) {
    ctx.error(['spec', 'jwksUnavailableStatus'], `must be 401 or 503, got ${s.jwksUnavailableStatus}`);
    return undefined;
  }
  const httpAuthz = s.httpAuthz ? finishHttpAuthz(s.httpAuthz, ['spec', 'httpAuthz'], ctx) : null;
  if (httpAuthz === undefined) return undefined;
  const d = DEFAULT_SETTINGS;
  return Object.freeze({
    rootNamespace: s.rootNamespace ?? d.rootNamespace,
    defaultNamespace: s.defaultNamespace ?? d.defaultNamespace,
    workloadLabels: Object.freeze({ ...(s.workloadLabels ?? {}) }),
    trustedProxyHops: s.trustedProxyHops ?? d.trustedProxyHops,
    jwksUnavailableStatus: (s.jwksUnavailableStatus ?? d.jwksUnavailableStatus) as 401 | 503,
    deadlineMarginMs: s.deadlineMargin ?? d.deadlineMarginMs,
    defaultTimeoutMs: s.defaultTimeout ?? d.defaultTimeoutMs,
    shutdownGracePeriodMs: s.shutdownGracePeriod ?? d.shutdownGracePeriodMs,
    reasonHeader: s.reasonHeader ?? d.reasonHeader,
    decisionLog: Object.freeze({
      enabled: s.decisionLog?.enabled ?? d.decisionLog.enabled,
      allowSampleRate: s.decisionLog?.allowSampleRate ?? d.decisionLog.allowSampleRate,
      clientAddress: s.decisionLog?.clientAddress ?? d.decisionLog.clientAddress,
    }),
    jwks: Object.freeze(
      Object.fromEntries(Object.entries(s.jwks ?? {}).map(([k, v]) => [`${k}Ms`, v])) as Partial<JwksTuningMs>,
    ),
    httpAuthz,
    pathNormalization: pathMode(s.pathNormalization?.normalization) ?? d.pathNormalization,
  });
}

function pathMode(v: string | undefined): PathNormalization | undefined {
  if (v === undefined || v === 'DEFAULT') return undefined;
  return (PATH_NORMALIZATIONS as readonly string[]).includes(v) ? (v as PathNormalization) : undefined;
}
