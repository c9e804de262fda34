/**
 * What a long-lived dependency (a JWKS source, an STS, a credential file) tells `GET /status`
 * about itself: the answer to "did my change take, and is everything it needs reachable?".
 * Dependencies live in the runtime's SharedResources; the status endpoint asks every one
 * that implements StatusReporter, so no stage has to know about the endpoint.
 */

export type StatusValue = string | number | boolean | null | readonly string[];

export interface StatusReport {
  /** `jwks` (an issuer's keys), `sts` (a token service), `file` (a credential file). */
  readonly kind: 'jwks' | 'sts' | 'file';
  /** The issuer, the STS `namespace/name`, the file path. Never a secret. */
  readonly name: string;
  /** False when its last operation failed (the server may still serve from what it has). */
  readonly ok: boolean;
  /** Times are ms since epoch (null = never); messages are already sanitized. */
  readonly details: Readonly<Record<string, StatusValue>>;
}

export interface StatusReporter {
  statusReport(): StatusReport;
}

export function isStatusReporter(v: unknown): v is StatusReporter {
  return typeof (v as { statusReport?: unknown } | null)?.statusReport === 'function';
}

/** The last outcome of a call to a dependency (an STS exchange): cheap to record on every call. */
export class LastOutcome {
  at: number | null = null;
  outcome: string | null = null;
  ok = true;
  /** Sanitized, secret-free detail of the last failure. */
  error: string | null = null;
  lastSuccessAt: number | null = null;

  record(at: number, outcome: string, ok: boolean, error?: string): void {
    this.at = at;
    this.outcome = outcome;
    this.ok = ok;
    if (ok) this.lastSuccessAt = at;
    else this.error = error ?? outcome;
  }

  details(): Record<string, StatusValue> {
    return { lastOutcome: this.outcome, lastAt: this.at, lastSuccessAt: this.lastSuccessAt, lastError: this.ok ? null : this.error };
  }
}
