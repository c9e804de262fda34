/**
 * Request-path canonical forms under Istio's mesh path-normalization options
 * (MeshConfig.pathNormalization.normalization), so a Check can tell whether the proxy in
 * front normalized the path the way the config says it does. What Istio sets on Envoy's
 * HttpConnectionManager for each option (pilot's listener builder):
 *
 *   NONE                      normalize_path: false
 *   BASE (Istio's default)    normalize_path: true
 *   MERGE_SLASHES             normalize_path: true, merge_slashes: true
 *   DECODE_AND_MERGE_SLASHES  the above and path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD
 *
 * The steps, in Istio's documented order (reference/config/security/normalization):
 *   1. (DECODE_AND_MERGE_SLASHES) %2F/%2f -> `/` and %5C/%5c -> `\`;
 *   2. (BASE) percent-encoded unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) decoded
 *      once (no double decoding: `%252e` stays), `\` -> `/`, `.` and `..` segments resolved
 *      as RFC 3986 §5.2.4 remove_dot_segments;
 *   3. (MERGE_SLASHES and above) runs of `/` merged into one.
 * `%00` is always refused by Envoy (400), so it is never canonical.
 */

export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];

const HEX = /^[0-9A-Fa-f]{2}$/;

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2d || // -
    c === 0x2e || // .
    c === 0x5f || // _
    c === 0x7e // ~
  );
}

/** One pass over the %HH escapes: decode those `decode(c)` accepts, keep the rest as written. */
function decodeEscapes(p: string, decode: (c: number) => boolean): string {
  if (p.indexOf('%') < 0) return p;
  let out = '';
  let last = 0;
  for (let i = p.indexOf('%'); i >= 0 && i + 2 < p.length; i = p.indexOf('%', i + 1)) {
    const hh = p.slice(i + 1, i + 3);
    if (!HEX.test(hh)) continue;
    const c = parseInt(hh, 16);
    if (!decode(c)) continue;
    out += p.slice(last, i) + String.fromCharCode(c);
    last = i + 3;
    i += 2;
  }
  return last === 0 ? p : out + p.slice(last);
}

/** RFC 3986 §5.2.4 remove_dot_segments. */
export function removeDotSegments(input: string): string {
  let inp = input;
  let out = '';
  while (inp.length > 0) {
    if (inp.startsWith('../')) inp = inp.slice(3);
    else if (inp.startsWith('./')) inp = inp.slice(2);
    else if (inp.startsWith('/./')) inp = inp.slice(2);
    else if (inp === '/.') inp = '/';
    else if (inp.startsWith('/../') || inp === '/..') {
      inp = inp === '/..' ? '/' : inp.slice(3);
      const j = out.lastIndexOf('/');
      out = j < 0 ? '' : out.slice(0, j);
    } else if (inp === '.' || inp === '..') inp = '';
    else {
      const start = inp.startsWith('/') ? 1 : 0;
      const j = inp.indexOf('/', start);
      const seg = j < 0 ? inp : inp.slice(0, j);
      out += seg;
      inp = j < 0 ? '' : inp.slice(j);
    }
  }
  return out;
}

/**
 * The path as a proxy configured with `mode` would forward it (query and fragment already
 * removed), or null when it would refuse it (`%00`). NONE returns the path unchanged.
 */
export function canonicalPath(path: string, mode: PathNormalization): string | null {
  if (mode === 'NONE') return path;
  if (/%00/.test(path)) return null;
  let p = path;
  if (mode === 'DECODE_AND_MERGE_SLASHES') p = decodeEscapes(p, (c) => c === 0x2f || c === 0x5c);
  p = decodeEscapes(p, isUnreserved);
  if (p.indexOf('\\') >= 0) p = p.replace(/\\/g, '/');
  p = removeDotSegments(p);
  if (mode !== 'BASE') p = p.replace(/\/{2,}/g, '/');
  return p;
}

/**
 * Is the path already in the canonical form of `mode`? Cheap for the usual path (no `%`,
 * no `\`, no `.` segment, no `//`): a few character searches, no allocation.
 */
export function isCanonicalPath(path: string, mode: PathNormalization): boolean {
  if (mode === 'NONE') return true;
  if (path.indexOf('%') < 0 && path.indexOf('\\') < 0 && !hasDotSegment(path) && (mode === 'BASE' || path.indexOf('//') < 0)) return true;
  return canonicalPath(path, mode) === path;
}

/** A `.` or `..` segment anywhere (`/./`, `/../`, a trailing `/.` or `/..`, or a leading one). */
function hasDotSegment(p: string): boolean {
  for (let i = p.indexOf('.'); i >= 0; i = p.indexOf('.', i + 1)) {
    const before = i === 0 ? 0x2f : p.charCodeAt(i - 1);
    if (before !== 0x2f) continue;
    const n = p.charCodeAt(i + 1);
    if (Number.isNaN(n) || n === 0x2f) return true; // `.`
    if (n === 0x2e) {
      const n2 = p.charCodeAt(i + 2);
      if (Number.isNaN(n2) || n2 === 0x2f) return true; // `..`
    }
  }
  return false;
}
