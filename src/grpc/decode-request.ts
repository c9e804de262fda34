/**
 * The CheckRequest deserializer of the Check RPC: protobuf bytes -> the plain object
 * proto-loader's deserializer makes (protobufjs decode, then toObject with LOADER_OPTIONS:
 * snake_case names, int64 as decimal strings, enums as numbers, only the fields on the wire,
 * oneof names), read in one pass without the intermediate message objects. proto-loader's
 * deserializer cost about as much per Check as the whole pipeline of a cached-token allow.
 *
 * It reads what Envoy sends: well-formed messages of the fields in proto/ (unknown fields are
 * skipped, as protobufjs skips them). Anything else — a wire type that does not match the
 * field, a length past its message, a varint longer than its type allows, a group, a
 * non-empty metadata_context / route_metadata_context / header_map, a pipe address, both
 * members of a oneof, a repeated message field, a map key `__proto__` — is handed to
 * proto-loader's deserializer, which decides exactly as before (the same object, or the same
 * error). So the result is always proto-loader's.
 *
 * Field numbers (proto/): CheckRequest attributes = 1. AttributeContext source = 1,
 * destination = 2, request = 4, context_extensions = 10, metadata_context = 11,
 * tls_session = 12, route_metadata_context = 13. Peer address = 1, service = 2, labels = 3,
 * principal = 4, certificate = 5. Address socket_address = 1, pipe = 2 (oneof address).
 * SocketAddress protocol = 1, address = 2, port_value = 3, named_port = 4 (oneof
 * port_specifier). Request time = 1, http = 2. Timestamp seconds = 1 (int64), nanos = 2.
 * HttpRequest id = 1, method = 2, headers = 3, path = 4, host = 5, scheme = 6, query = 7,
 * fragment = 8, size = 9 (int64), protocol = 10, body = 11, raw_body = 12, header_map = 13.
 * TLSSession sni = 1. Map entries key = 1, value = 2.
 */
import type { RawCheckRequest } from '../core/context.js';

/** Thrown inside the fast path for anything it leaves to the full deserializer. */
const OTHER = new Error('not on the fast path');

type Obj = Record<string, unknown>;

let b: Buffer = Buffer.alloc(0);
let p = 0;

/** A varint of at most 32 bits (tags, lengths, uint32, non-negative int32). */
function u32(end: number): number {
  let v = 0;
  for (let shift = 0; shift < 32; shift += 7) {
    if (p >= end) throw OTHER;
    const c = b[p++]!;
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
function i64(end: number): string {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (p >= end) throw OTHER;
    const c = b[p++]!;
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

/** The end of the length-delimited field starting at p (its length read), within `end`. */
function delimited(end: number): number {
  const len = u32(end);
  const e = p + len;
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

function str(end: number): string {
  const e = delimited(end);
  const n = e - p;
  if (n === 0) return '';
  if (n <= SHORT) {
    const slot = (n * 31 + b[p]! * 7 + b[e - 1]! * 3 + b[p + (n >> 1)]!) & (SLOTS - 1);
    const c = recent[slot]!;
    if (c.length === n) {
      let i = 0;
      while (i < n && c.charCodeAt(i) === b[p + i]) i++;
      if (i === n) {
        p = e;
        return c;
      }
    }
    const s = b.toString('utf8', p, e);
    let ascii = s.length === n;
    for (let i = 0; ascii && i < n; i++) if (s.charCodeAt(i) > 127) ascii = false;
    if (ascii) recent[slot] = s;
    p = e;
    return s;
  }
  const s = b.toString('utf8', p, e);
  p = e;
  return s;
}

function bytes(end: number): Buffer {
  const e = delimited(end);
  const start = p;
  p = e;
  return start === e ? Buffer.alloc(0) : b.subarray(start, e);
}

/** Skip an unknown field (wire types 0, 1, 2, 5; a group goes to the full deserializer). */
function skip(wt: number, end: number): void {
  if (wt === 0) {
    for (let i = 0; ; i++) {
      if (i >= 10 || p >= end) throw OTHER;
      if (b[p++]! < 128) return;
    }
  }
  let n: number;
  if (wt === 1) n = 8;
  else if (wt === 5) n = 4;
  else if (wt === 2) n = u32(end);
  else throw OTHER;
  if (p + n > end) throw OTHER;
  p += n;
}

/** A map<string, string> entry into `into`. */
function mapEntry(into: Obj, end: number): void {
  const e = delimited(end);
  let k = '';
  let v = '';
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1 || f === 2) {
      if ((t & 7) !== 2) throw OTHER;
      if (f === 1) k = str(e);
      else v = str(e);
    } else skip(t & 7, e);
  }
  if (p !== e || k === '__proto__') throw OTHER;
  into[k] = v;
}

/** An empty message field whose non-empty form goes to the full deserializer. */
function empty(end: number): Obj {
  if (delimited(end) !== p) throw OTHER;
  return {};
}

function wire(t: number, wt: number): void {
  if ((t & 7) !== wt) throw OTHER;
}

function socketAddress(end: number): Obj {
  const e = delimited(end);
  let protocol: number | undefined;
  let address: string | undefined;
  let portValue: number | undefined;
  let namedPort: string | undefined;
  while (p < e) {
    const t = u32(e);
    switch (t >>> 3) {
      case 1:
        wire(t, 0);
        protocol = u32(e) | 0;
        break;
      case 2:
        wire(t, 2);
        address = str(e);
        break;
      case 3:
        wire(t, 0);
        portValue = u32(e);
        break;
      case 4:
        wire(t, 2);
        namedPort = str(e);
        break;
      default:
        skip(t & 7, e);
    }
  }
  if (portValue !== undefined && namedPort !== undefined) throw OTHER;
  const o: Obj = {};
  if (protocol !== undefined) o['protocol'] = protocol;
  if (address !== undefined) o['address'] = address;
  if (portValue !== undefined) {
    o['port_value'] = portValue;
    o['port_specifier'] = 'port_value';
  }
  if (namedPort !== undefined) {
    o['named_port'] = namedPort;
    o['port_specifier'] = 'named_port';
  }
  return o;
}

function addressOf(end: number): Obj {
  const e = delimited(end);
  let sa: Obj | undefined;
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1) {
      wire(t, 2);
      if (sa !== undefined) throw OTHER;
      sa = socketAddress(e);
    } else if (f === 2) throw OTHER;
    else skip(t & 7, e);
  }
  return sa === undefined ? {} : { socket_address: sa, address: 'socket_address' };
}

function peer(end: number): Obj {
  const e = delimited(end);
  let address: Obj | undefined;
  let service: string | undefined;
  let labels: Obj | undefined;
  let principal: string | undefined;
  let certificate: string | undefined;
  while (p < e) {
    const t = u32(e);
    switch (t >>> 3) {
      case 1:
        wire(t, 2);
        if (address !== undefined) throw OTHER;
        address = addressOf(e);
        break;
      case 2:
        wire(t, 2);
        service = str(e);
        break;
      case 3:
        wire(t, 2);
        mapEntry((labels ??= {}), e);
        break;
      case 4:
        wire(t, 2);
        principal = str(e);
        break;
      case 5:
        wire(t, 2);
        certificate = str(e);
        break;
      default:
        skip(t & 7, e);
    }
  }
  const o: Obj = {};
  if (address !== undefined) o['address'] = address;
  if (service !== undefined) o['service'] = service;
  if (labels !== undefined) o['labels'] = labels;
  if (principal !== undefined) o['principal'] = principal;
  if (certificate !== undefined) o['certificate'] = certificate;
  return o;
}

function timestamp(end: number): Obj {
  const e = delimited(end);
  let seconds: string | undefined;
  let nanos: number | undefined;
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1) {
      wire(t, 0);
      seconds = i64(e);
    } else if (f === 2) {
      wire(t, 0);
      const n = u32(e);
      if (n > 0x7fffffff) throw OTHER;
      nanos = n;
    } else skip(t & 7, e);
  }
  const o: Obj = {};
  if (seconds !== undefined) o['seconds'] = seconds;
  if (nanos !== undefined) o['nanos'] = nanos;
  return o;
}

/** HttpRequest's string fields by number (1-11 except 3 and 9); 0 = not a string field. */
const HTTP_STRING = [0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1];
const HTTP_NAMES = ['', 'id', 'method', 'headers', 'path', 'host', 'scheme', 'query', 'fragment', 'size', 'protocol', 'body', 'raw_body', 'header_map'];

function httpRequest(end: number): Obj {
  const e = delimited(end);
  // values by field number (1-13), set as they come, output in field-number order
  const v: unknown[] = [];
  let headers: Obj | undefined;
  let any = false;
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f >= 1 && f <= 11 && HTTP_STRING[f] === 1) {
      wire(t, 2);
      v[f] = str(e);
    } else if (f === 3) {
      wire(t, 2);
      mapEntry((headers ??= {}), e);
      v[3] = headers;
    } else if (f === 9) {
      wire(t, 0);
      v[9] = i64(e);
    } else if (f === 12) {
      wire(t, 2);
      v[12] = bytes(e);
    } else if (f === 13) {
      wire(t, 2);
      if (v[13] !== undefined) throw OTHER;
      v[13] = empty(e);
    } else {
      skip(t & 7, e);
      continue;
    }
    any = true;
  }
  const o: Obj = {};
  if (any) for (let f = 1; f <= 13; f++) if (v[f] !== undefined) o[HTTP_NAMES[f]!] = v[f];
  return o;
}

function request(end: number): Obj {
  const e = delimited(end);
  let time: Obj | undefined;
  let http: Obj | undefined;
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1) {
      wire(t, 2);
      if (time !== undefined) throw OTHER;
      time = timestamp(e);
    } else if (f === 2) {
      wire(t, 2);
      if (http !== undefined) throw OTHER;
      http = httpRequest(e);
    } else skip(t & 7, e);
  }
  const o: Obj = {};
  if (time !== undefined) o['time'] = time;
  if (http !== undefined) o['http'] = http;
  return o;
}

function tlsSession(end: number): Obj {
  const e = delimited(end);
  let sni: string | undefined;
  while (p < e) {
    const t = u32(e);
    if (t >>> 3 === 1) {
      wire(t, 2);
      sni = str(e);
    } else skip(t & 7, e);
  }
  return sni === undefined ? {} : { sni };
}

function attributeContext(end: number): Obj {
  const e = delimited(end);
  let source: Obj | undefined;
  let destination: Obj | undefined;
  let req: Obj | undefined;
  let ext: Obj | undefined;
  let metadata: Obj | undefined;
  let tls: Obj | undefined;
  let routeMetadata: Obj | undefined;
  while (p < e) {
    const t = u32(e);
    const f = t >>> 3;
    if (f === 1 || f === 2 || f === 4 || f === 10 || f === 11 || f === 12 || f === 13) wire(t, 2);
    switch (f) {
      case 1:
        if (source !== undefined) throw OTHER;
        source = peer(e);
        break;
      case 2:
        if (destination !== undefined) throw OTHER;
        destination = peer(e);
        break;
      case 4:
        if (req !== undefined) throw OTHER;
        req = request(e);
        break;
      case 10:
        mapEntry((ext ??= {}), e);
        break;
      case 11:
        if (metadata !== undefined) throw OTHER;
        metadata = empty(e);
        break;
      case 12:
        if (tls !== undefined) throw OTHER;
        tls = tlsSession(e);
        break;
      case 13:
        if (routeMetadata !== undefined) throw OTHER;
        routeMetadata = empty(e);
        break;
      default:
        skip(t & 7, e);
    }
  }
  const o: Obj = {};
  if (source !== undefined) o['source'] = source;
  if (destination !== undefined) o['destination'] = destination;
  if (req !== undefined) o['request'] = req;
  if (ext !== undefined) o['context_extensions'] = ext;
  if (metadata !== undefined) o['metadata_context'] = metadata;
  if (tls !== undefined) o['tls_session'] = tls;
  if (routeMetadata !== undefined) o['route_metadata_context'] = routeMetadata;
  return o;
}

function checkRequest(buf: Buffer): Obj {
  b = buf;
  p = 0;
  const end = buf.length;
  let attributes: Obj | undefined;
  while (p < end) {
    const t = u32(end);
    if (t >>> 3 === 1) {
      wire(t, 2);
      if (attributes !== undefined) throw OTHER;
      attributes = attributeContext(end);
    } else skip(t & 7, end);
  }
  return attributes === undefined ? {} : { attributes };
}

/**
 * A deserializer for grpc-js: the fast path above, or `full` (proto-loader's) for anything it
 * does not read itself.
 */
export function checkRequestDeserializer(full: (buf: Buffer) => unknown): (buf: Buffer) => RawCheckRequest {
  return (buf: Buffer): RawCheckRequest => {
    let r: Obj | undefined;
    try {
      r = checkRequest(buf);
    } catch {
      r = undefined;
    }
    b = EMPTY; // keep no request alive
    return (r ?? full(buf)) as RawCheckRequest;
  };
}

const EMPTY = Buffer.alloc(0);
