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
import { at, bytes, delimited, empty, EMPTY, i64, mapEntry, OTHER, skip, str, u32, wire, type Obj } from './wire-reader.js';

function socketAddress(end: number): Obj {
  const e = delimited(end);
  let protocol: number | undefined;
  let address: string | undefined;
  let portValue: number | undefined;
  let namedPort: string | undefined;
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  while (at.p < e) {
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
  at.b = buf;
  at.p = 0;
  const end = buf.length;
  let attributes: Obj | undefined;
  while (at.p < end) {
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
    at.b = EMPTY; // keep no request alive
    return (r ?? full(buf)) as RawCheckRequest;
  };
}

