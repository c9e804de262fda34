/**
 * The TokenReview settings block, compiled once for every kind that validates tokens with the
 * Kubernetes API server (TokenExchangePolicy `actor.tokenReview`, CredentialValidator
 * `kubernetes.tokenReview`): one schema, one set of checks, one set of defaults
 * (TOKENREVIEW_DEFAULTS), one shared client per distinct settings.
 *
 *   apiServer   default: in a pod, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
 *   caFile      default: the pod's service-account CA, unless apiServer is set
 *   tokenFile   default: the pod's service-account token, unless apiServer is set
 *   timeout     default 1s        cacheTtl  default 10s (0 disables the result cache)
 *
 * An explicit apiServer takes no in-cluster file: outside a cluster those paths do not exist,
 * and inside one a user pointing elsewhere means another CA and credentials.
 */
import { existsSync } from 'node:fs';
import type { Path } from '../config/issues.js';
import { apiServerOutsideCluster, missingOutsideCluster, type OutsideCluster } from '../config/outside-cluster.js';
import { duration, str, type ValidationContext } from '../config/schema.js';
import type { Runtime } from '../core/runtime.js';
import { inClusterDefaults, TOKENREVIEW_DEFAULTS, TokenReviewClient, type TokenReviewOptions } from './tokenreview.js';

/** The block as written (durations already in ms). */
export interface RawTokenReviewSettings {
  apiServer?: string;
  caFile?: string;
  tokenFile?: string;
  timeout?: number;
  cacheTtl?: number;
}

/** Schema fields of the block, spread into a kind's own `obj` (which may add fields such as `audiences`). */
export const TOKENREVIEW_SETTINGS_FIELDS = Object.freeze({
  apiServer: str({ nonEmpty: true }),
  caFile: str({ nonEmpty: true }),
  tokenFile: str({ nonEmpty: true }),
  timeout: duration({ minMs: 1, maxMs: 60_000 }),
  cacheTtl: duration({ minMs: 0, maxMs: 600_000 }),
});

/** Where the block sits: issues are reported at `path`.<field> of the document. */
export interface SettingsSite extends OutsideCluster {
  readonly v: ValidationContext;
  readonly path: Path;
  /** A file path as written in the document, resolved against the document's file. */
  resolvePath(p: string): string;
}

function httpUrlProblem(u: string): string | null {
  if (/\s/.test(u)) return 'must be an http(s) URL';
  try {
    const url = new URL(u);
    return url.protocol === 'http:' || url.protocol === 'https:' ? null : 'must be an http(s) URL';
  } catch {
    return 'must be an http(s) URL';
  }
}

/**
 * Check the block and return the TokenReview client for it (shared across config reloads and
 * between kinds with the same settings), or undefined after reporting why not. `audiences` are
 * the audiences the reviewed tokens must be valid for (where they are written differs by kind;
 * warning about an empty list is the kind's job, since what it admits differs). No client is
 * made when the document already has errors.
 */
export function compileTokenReviewSettings(
  raw: RawTokenReviewSettings,
  audiences: readonly string[],
  site: SettingsSite,
  runtime: Runtime,
  env: NodeJS.ProcessEnv = process.env,
): TokenReviewClient | undefined {
  const { v, path } = site;
  const at = (field: string): Path => [...path, field];
  const inCluster = inClusterDefaults(env);
  // validate --ci: no in-cluster API server here; a stand-in, with a warning at the field.
  const apiServer = raw.apiServer ?? inCluster.apiServer ?? apiServerOutsideCluster(site, v, at('apiServer'));
  if (!apiServer) {
    v.error(at('apiServer'), 'required outside a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)');
    return undefined;
  }
  const bad = httpUrlProblem(apiServer);
  if (bad) v.error(at('apiServer'), `invalid value ${JSON.stringify(apiServer)}: ${bad}`);
  // The pod's own CA and token go with the in-cluster API server (not with a named one, nor a stand-in).
  const inPod = raw.apiServer === undefined && inCluster.apiServer !== undefined;
  const file = (field: 'caFile' | 'tokenFile', written: string | undefined, fallback: string): string | undefined => {
    const abs = written !== undefined ? site.resolvePath(written) : inPod ? fallback : undefined;
    if (abs === undefined || missingOutsideCluster(site, v, at(field), written ?? abs, abs)) return undefined;
    if (!existsSync(abs)) v.error(at(field), `cannot read file ${JSON.stringify(written ?? abs)}`);
    return abs;
  };
  const caFile = file('caFile', raw.caFile, inCluster.caFile);
  const tokenFile = file('tokenFile', raw.tokenFile, inCluster.tokenFile);
  if (v.hasErrors) return undefined;
  const opts: TokenReviewOptions = {
    apiServer,
    ...(caFile !== undefined ? { caFile } : {}),
    ...(tokenFile !== undefined ? { tokenFile } : {}),
    audiences: [...audiences],
    timeoutMs: raw.timeout ?? TOKENREVIEW_DEFAULTS.timeoutMs,
    cacheTtlMs: raw.cacheTtl ?? TOKENREVIEW_DEFAULTS.cacheTtlMs,
  };
  try {
    return runtime.shared.get(`kubernetes:tokenreview:${JSON.stringify(opts)}`, () => new TokenReviewClient(opts, runtime));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    v.error(at('caFile'), `cannot read the CA file${code ? `: ${code}` : ''}`);
    return undefined;
  }
}
