/**
 * The protobuf wire reading of the CheckRequest fast path (decode-request.ts): varints,
 * length-delimited fields bounded by their message, strings, bytes, unknown fields skipped,
 * map<string, string> entries. Anything outside what it reads exactly as protobufjs does
 * throws OTHER, and the caller hands the whole message to proto-loader's deserializer.
 */

/** Thrown for anything the fast path leaves to the full deserializer. */
export const OTHER = new Error('not on the fast path');

export type Obj = Record<string, unknown>;

export const EMPTY: Buffer = Buffer.alloc(0);

/** The message being read and the position in it (one Check at a time: synchronous). */
export const at: { b: Buffer; p: number } = { b: EMPTY, p: 0 };

/** A varint of at most 32 bits (tags, lengths, uint32, non-negative int32). */
export function u32(end: number): number {
  let v = 0;
  for (let shift = 0; shift < 32; shift += 7) {
    if (at.p >= end) throw OTHER;
    const c = at.b[at.p++]!;
    if (shift === 28) {
      // the fifth byte: its top bits would be past 32 bits (protobufjs reads those differently)
      if (c > 15) throw OTHER;
      return (v | (c << 28)) >>> 0;
    }
    v |= (c & 127) << shift;
    if (c < 128) return v >>> 0;
  }
  throw OTHER;
}

/** An int64 varint as protobufjs' Long.toString() writes it (signed decimal). */
export function i64(end: number): string {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (at.p >= end) throw OTHER;
    const c = at.b[at.p++]!;
    const bits = c & 127;
    if (i < 4) lo |= bits << (7 * i);
    else if (i === 4) {
      lo |= (bits & 15) << 28;
      hi |= bits >> 4;
    } else if (i < 9) hi |= bits << (7 * i - 32);
    else if (c > 1) throw OTHER;
    else hi |= c << 31;
    if (c < 128) {
      lo >>>= 0;
      hi >>>= 0;
      if (hi < 0x200000) return String(hi * 4294967296 + lo);
      return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)).toString();
    }
  }
  throw OTHER;
}

/** The end of the length-delimited field starting at at.p (its length read), within `end`. */
export function delimited(end: number): number {
  const len = u32(end);
  const e = at.p + len;
  if (e > end) throw OTHER;
  return e;
}

/**
 * Short ASCII strings seen recently (header names, methods, hosts, paths, ids repeat from
 * Check to Check), by a hash of their length and a few bytes: a hit compares every byte and
 * returns the same string as last time (no UTF-8 decoding, and a header name V8 has already
 * internalized). Bounded; a miss just decodes.
 */
const SHORT = 48;
const SLOTS = 1024;
const recent: string[] = new Array<string>(SLOTS).fill('');

export function str(end: number): string {
  const e = delimited(end);
  const n = e - at.p;
  if (n === 0) return '';
  if (n <= SHORT) {
    const slot = (n * 31 + at.b[at.p]! * 7 + at.b[e - 1]! * 3 + at.b[at.p + (n >> 1)]!) & (SLOTS - 1);
    const c = recent[slot]!;
    if (c.length === n) {
      let i = 0;
      while (i < n && c.charCodeAt(i) === at.b[at.p + i]) i++;
      if (i === n) {
        at.p = e;
        return c;
      }
    }
    const s = at.b.toString('utf8', at.p, e);
    let ascii = s.length === n;
    for (let i = 0; ascii && i < n; i++) if (s.charCodeAt(i) > 127) ascii = false;
    if (ascii) recent[slot] = s;
    at.p = e;
    return s;
  }
  const s = at.b.toString('utf8', at.p, e);
  at.p = e;
  return s;
}

export function bytes(end: number): Buffer {
  const e = delimited(end);
  const start = at.p;
  at.p = e;
  return start === e ? Buffer.alloc(0) : at.b.subarray(start, e);
}

/** Skip an unknown field (wire types 0, 1, 2, 5; a group goes to the full deserializer). */
export function skip(wt: number, end: number): void {
  if (wt === 0) {
    for (let i = 0; ; i++) {
      if (i >= 10 || at.p >= end) throw OTHER;
      if (at.b[at.p++]! < 128) return;
    }
  }
  let n: number;
  if (wt === 1) n = 8;
  else if (wt === 5) n = 4;
  else if (wt === 2) n = u32(end);
  else throw OTHER;
  if (at.p + n > end) throw OTHER;
  at.p += n;
}

/** A map<string, string> entry into `into`. */
export function mapEntry(into: Obj, end: number): void {
  const e = delimited(end);
  let k = '';
  let v = '';
  while (at.p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1 || f === 2) {
      if ((t & 7) !== 2) throw OTHER;
      if (f === 1) k = str(e);
      else v = str(e);
    } else skip(t & 7, e);
  }
  if (at.p !== e || k === '__proto__') throw OTHER;
  into[k] = v;
}

/** An empty message field whose non-empty form goes to the full deserializer. */
export function empty(end: number): Obj {
  if (delimited(end) !== at.p) throw OTHER;
  return {};
}

export function wire(t: number, wt: number): void {
  if ((t & 7) !== wt) throw OTHER;
}
