/**
 * IP addresses and CIDR blocks for `ipBlocks`, `remoteIpBlocks`, `source.ip`, `remote.ip`
 * and `destination.ip`. Parsing follows Go's net/netip, which Istio's validation uses
 * (`security.ValidateIPs`): dotted-quad IPv4 without leading zeros, RFC 4291 IPv6 text
 * (with an optional trailing dotted quad). A CIDR with host bits set is accepted and
 * masked, as Envoy's CidrRange does. Matching is version-strict (Envoy compares an IPv4
 * peer only with IPv4 ranges; `::ffff:a.b.c.d` is an IPv6 address).
 *
 * Request-side parsing writes into caller-owned Uint32Arrays: no allocation per request.
 */

export interface Cidr {
  readonly version: 4 | 6;
  /** Network words, already masked: 1 word for IPv4, 4 for IPv6. */
  readonly words: Uint32Array;
  readonly bits: number;
  readonly text: string;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Parse dotted-quad IPv4 in s[start, end); returns the address as uint32, or -1. */
export function parseIPv4(s: string, start = 0, end = s.length): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    if (i >= end || !isDigit(s.charCodeAt(i))) return -1;
    const first = i;
    let octet = 0;
    while (i < end && isDigit(s.charCodeAt(i))) {
      octet = octet * 10 + (s.charCodeAt(i) - 48);
      i++;
      if (i - first > 3) return -1;
    }
    // netip rejects leading zeros ("010.0.0.1") as ambiguous (octal in some parsers).
    if (i - first > 1 && s.charCodeAt(first) === 48) return -1;
    if (octet > 255) return -1;
    value = value * 256 + octet;
    parts++;
    if (parts < 4) {
      if (i >= end || s.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === end ? value >>> 0 : -1;
}

/** Parse IPv6 text in s into out (4 big-endian words). Returns false when invalid. Zones are rejected. */
export function parseIPv6(s: string, out: Uint32Array): boolean {
  const groups = [0, 0, 0, 0, 0, 0, 0, 0];
  let n = 0; // groups written
  let gap = -1; // index in groups where '::' is
  let i = 0;
  const len = s.length;
  if (len < 2) return false;
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
    if (i === len) {
      out.fill(0);
      return true;
    }
  }
  while (i < len) {
    if (n >= 8) return false;
    // Embedded IPv4 in the last 32 bits.
    let j = i;
    while (j < len && hexVal(s.charCodeAt(j)) >= 0) j++;
    if (j < len && s.charCodeAt(j) === 46) {
      if (n > 6) return false;
      const v4 = parseIPv4(s, i, len);
      if (v4 < 0) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      i = len;
      break;
    }
    const digits = j - i;
    if (digits === 0 || digits > 4) return false;
    let g = 0;
    for (let k = i; k < j; k++) g = g * 16 + hexVal(s.charCodeAt(k));
    groups[n++] = g;
    i = j;
    if (i === len) break;
    if (s.charCodeAt(i) !== 58) return false; // '%' zones and anything else
    i++;
    if (i < len && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
      if (i === len) break;
    } else if (i === len) {
      return false; // trailing single ':'
    }
  }
  if (gap < 0) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false;
    const tail = n - gap;
    for (let k = 7; k >= 8 - tail; k--) groups[k] = groups[gap + tail - (8 - k)]!;
    for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  }
  for (let w = 0; w < 4; w++) out[w] = ((groups[2 * w]! << 16) | groups[2 * w + 1]!) >>> 0;
  return true;
}

/** Parse an address into out; returns 4, 6 or 0 (invalid / empty). */
export function parseIp(s: string, out: Uint32Array): 0 | 4 | 6 {
  if (s.length === 0) return 0;
  if (s.indexOf(':') >= 0) return parseIPv6(s, out) ? 6 : 0;
  const v = parseIPv4(s);
  if (v < 0) return 0;
  out[0] = v;
  return 4;
}

function maskWord(word: number, bits: number): number {
  if (bits <= 0) return 0;
  if (bits >= 32) return word >>> 0;
  return (word & (0xffffffff << (32 - bits))) >>> 0;
}

/** Parse `a.b.c.d`, `a.b.c.d/n`, IPv6 or IPv6/n. Returns a Cidr or an error message (Istio's wording). */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const words = new Uint32Array(4);
  const version = parseIp(addr, words);
  if (version === 0) return slash < 0 ? `bad IP address (${text})` : `bad CIDR range (${text}): invalid address`;
  const max = version === 4 ? 32 : 128;
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(b) || Number(b) > max) return `bad CIDR range (${text}): invalid prefix length`;
    bits = Number(b);
  }
  const n = version === 4 ? 1 : 4;
  const net = new Uint32Array(n);
  for (let w = 0; w < n; w++) net[w] = maskWord(words[w]!, bits - 32 * w);
  return { version, words: net, bits, text };
}

/** Is the parsed address (version, words) inside the range? */
export function cidrContains(c: Cidr, version: 4 | 6, words: Uint32Array): boolean {
  if (c.version !== version) return false;
  const n = version === 4 ? 1 : 4;
  for (let w = 0; w < n; w++) {
    const b = c.bits - 32 * w;
    if (b <= 0) return true;
    if (maskWord(words[w]!, b) !== c.words[w]) return false;
  }
  return true;
}
