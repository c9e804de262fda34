/**
 * `validate --ci` (and `test --ci`): the config is checked outside the cluster, where what
 * exists only in obo-authz's pod is absent — mounted Secrets and projected tokens, the pod's
 * service-account CA and token, the in-cluster API server (KUBERNETES_SERVICE_HOST). There
 * each such reference is a warning naming the field instead of an error, and the document
 * is compiled on with a stand-in, so everything else in it (and what refers to it) is still
 * checked. Serving never runs in this mode: a missing file stays an error at start-up.
 */
import { existsSync } from 'node:fs';
import type { Path } from './issues.js';
import type { CompileContext, KindDocument } from './kinds.js';
import type { ValidationContext } from './schema.js';

/** The mode flag, as the CompileContext (or a settings block compiled for one) carries it. */
export interface OutsideCluster {
  readonly outsideCluster?: boolean;
}

/** Where a pod reaches its API server; only a stand-in here (never contacted by validate). */
export const IN_CLUSTER_API_SERVER = 'https://kubernetes.default.svc';

/**
 * True when `abs` is missing and the config is checked outside the cluster: a warning has
 * been reported at `field` and the caller goes on without the file. False otherwise (the
 * file exists, or a missing file is the caller's error to report as before).
 */
export function missingOutsideCluster(scope: OutsideCluster, v: ValidationContext, field: Path, written: string, abs: string): boolean {
  if (!scope.outsideCluster || existsSync(abs)) return false;
  v.warn(field, `file ${JSON.stringify(written)} is not here (checked outside the cluster): it must exist where obo-authz runs`);
  return true;
}

/**
 * The API server to use when a document names none and KUBERNETES_SERVICE_HOST is unset:
 * outside the cluster a stand-in (with a warning at `field`), else undefined (the caller's error).
 */
export function apiServerOutsideCluster(scope: OutsideCluster, v: ValidationContext, field: Path): string | undefined {
  if (!scope.outsideCluster) return undefined;
  v.warn(field, 'the in-cluster API server (KUBERNETES_SERVICE_HOST) is not known outside the cluster: not checked here');
  return IN_CLUSTER_API_SERVER;
}

/**
 * A TokenReview credential file (CA, token): as written, else `dflt` (the pod's own, when the
 * API server is the in-cluster one). Undefined when there is none, or when it is missing
 * outside the cluster (a warning at `field`).
 */
export function podCredentialFile(cc: CompileContext, k: Pick<KindDocument, 'doc' | 'v'>, field: Path, written: string | undefined, dflt: string | undefined): string | undefined {
  const abs = written ? cc.resolvePath(k.doc, written) : dflt;
  return abs !== undefined && missingOutsideCluster(cc, k.v, field, written ?? abs, abs) ? undefined : abs;
}
