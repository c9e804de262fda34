/** Claim helpers shared by identity building and header output (Envoy claim_to_headers). */
import { scopeTokens } from '../core/scopes.js';

/** Look up a `.`-separated nested claim path (Envoy / Istio `outputClaimToHeaders`). */
export function getClaim(payload: Record<string, unknown>, path: readonly string[]): unknown {
  let cur: unknown = payload;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    if (!Object.prototype.hasOwnProperty.call(cur, seg)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/**
 * A claim as Envoy writes it into a header: strings as is, numbers as text (integers
 * without a fraction), booleans `true`/`false`, objects and lists as base64 of their JSON.
 * Envoy adds no header for an empty value or a null claim; undefined means "no header".
 */
export function claimHeaderValue(v: unknown): string | undefined {
  let out: string;
  if (typeof v === 'string') out = v;
  else if (typeof v === 'number') {
    if (!Number.isFinite(v)) return undefined;
    out = Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? BigInt(v).toString() : String(v);
  } else if (typeof v === 'boolean') out = v ? 'true' : 'false';
  else if (v !== null && typeof v === 'object') out = Buffer.from(JSON.stringify(v), 'utf8').toString('base64');
  else return undefined;
  return out === '' ? undefined : out;
}

/** Claims Istio always treats as space-delimited (request.auth.claims). */
export const DEFAULT_SPACE_DELIMITED = ['scope', 'permission'] as const;

/**
 * Istio `request.auth.claims`: a copy of the payload where each listed claim (top level,
 * or a `.` path) holding a string is replaced by its space-separated parts.
 */
export function splitSpaceDelimited(payload: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  let out: Record<string, unknown> = payload;
  let copied = false;
  for (const name of names) {
    const paths = name.includes('.') ? [[name], name.split('.')] : [[name]];
    for (const path of paths) {
      const v = getClaim(out, path);
      if (typeof v !== 'string') continue;
      if (!copied) {
        out = { ...payload };
        copied = true;
      }
      setPath(out, path, scopeTokens(v));
      break;
    }
  }
  return out;
}

function setPath(obj: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let cur = obj;
  for (let i = 0; i < path.length - 1; i++) {
    const next = cur[path[i]!] as Record<string, unknown>;
    const copy = { ...next };
    cur[path[i]!] = copy;
    cur = copy;
  }
  cur[path[path.length - 1]!] = value;
}
