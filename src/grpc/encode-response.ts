/**
 * The CheckResponse serializer of the Check RPC: CheckResponseObject -> protobuf bytes, the
 * same bytes proto-loader's serializer (protobufjs fromObject + encode) writes for it, in one
 * pass over a reused scratch buffer. proto-loader's serializer builds a message object per
 * nested message (every header, every metadata value) and then encodes them: several µs per
 * Check, more than the pipeline itself for a cached-token allow.
 *
 * What protobufjs writes, and so what this writes: fields in field-number order; a scalar
 * present in the object is written even when it is the default (`code: 0`, `body: ''`); an
 * absent (undefined or null) field is not; a repeated field only when non-empty; a map
 * (Struct.fields) in Object.keys order, each entry as {key = 1, value = 2}. One deliberate
 * difference: protobufjs writes a lone UTF-16 surrogate in a string shorter than 40 units
 * as the 3-byte surrogate encoding, which is not UTF-8 (a proto3 parser such as Envoy's rejects
 * the whole message); this writes U+FFFD there, as protobufjs itself does for longer strings.
 *
 * Field numbers (proto/): CheckResponse status = 1, denied_response = 2, ok_response = 3,
 * dynamic_metadata = 4; google.rpc.Status code = 1, message = 2; DeniedHttpResponse status
 * = 1 (HttpStatus code = 1), headers = 2, body = 3; OkHttpResponse headers = 2,
 * headers_to_remove = 5, response_headers_to_add = 6, query_parameters_to_remove = 8;
 * HeaderValueOption header = 1 (HeaderValue key = 1, value = 2), append = 2 (BoolValue
 * value = 1), append_action = 3; Struct fields = 1 (map<string, Value>); Value number_value
 * = 2 (double), string_value = 3, bool_value = 4, struct_value = 5, list_value = 6 (ListValue
 * values = 1). Wire types: varint 0, 64-bit 1, length-delimited 2.
 */
import type { CheckResponseObject, HeaderValueOption, StructObject } from '../respond/respond.js';

type ValueObject = StructObject['fields'][string];

let buf = Buffer.allocUnsafe(16 * 1024);
let pos = 0;

function grow(need: number): void {
  const next = Buffer.allocUnsafe(Math.max(need, buf.length * 2));
  buf.copy(next, 0, 0, pos);
  buf = next;
}

function ensure(n: number): void {
  if (pos + n > buf.length) grow(pos + n);
}

function varint(v: number): void {
  ensure(5);
  while (v > 127) {
    buf[pos++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[pos++] = v;
}

/** int32: a negative value is a 10-byte varint of its 64-bit two's complement. */
function int32(v: number): void {
  v |= 0;
  if (v >= 0) return varint(v);
  ensure(10);
  let lo = v >>> 0;
  let hi = 0xffffffff;
  for (let i = 0; i < 9; i++) {
    buf[pos++] = (lo & 127) | 128;
    lo = (lo >>> 7) | ((hi & 127) << 25);
    hi >>>= 7;
  }
  buf[pos++] = lo & 1;
}

function tag(t: number): void {
  ensure(1);
  buf[pos++] = t;
}

/** A length-delimited string field (`t` is its one-byte tag). */
function string(t: number, s: string): void {
  const len = s.length;
  if (len < 128) {
    // ASCII, the common case: bytes = UTF-16 units, one-byte length
    ensure(2 + len);
    const start = pos + 2;
    let p = start;
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i === len) {
      buf[pos] = t;
      buf[pos + 1] = len;
      pos = p;
      return;
    }
  }
  const n = Buffer.byteLength(s, 'utf8');
  tag(t);
  varint(n);
  ensure(n);
  pos += buf.write(s, pos, n, 'utf8');
}

/** Start a nested message field: its tag and one byte kept for its length. */
function open(t: number): number {
  ensure(2);
  buf[pos++] = t;
  return pos++;
}

/** End the nested message whose length byte is at `at` (moved right if the length needs more). */
function close(at: number): void {
  const len = pos - at - 1;
  if (len < 128) {
    buf[at] = len;
    return;
  }
  const size = len < 1 << 14 ? 2 : len < 1 << 21 ? 3 : len < 1 << 28 ? 4 : 5;
  ensure(size - 1);
  buf.copyWithin(at + size, at + 1, pos);
  let v = len;
  let p = at;
  while (v > 127) {
    buf[p++] = (v & 127) | 128;
    v >>>= 7;
  }
  buf[p] = v;
  pos += size - 1;
}

function headerOption(t: number, h: HeaderValueOption): void {
  const at = open(t);
  const hv = h.header;
  if (hv != null) {
    const at2 = open(0x0a);
    if (hv.key != null) string(0x0a, hv.key);
    if (hv.value != null) string(0x12, hv.value);
    close(at2);
  }
  const append = h.append;
  if (append != null) {
    const at2 = open(0x12);
    if (append.value != null) {
      tag(0x08);
      varint(append.value ? 1 : 0);
    }
    close(at2);
  }
  if (h.append_action != null) {
    tag(0x18);
    int32(h.append_action);
  }
  close(at);
}

function headerOptions(t: number, hs: readonly HeaderValueOption[] | undefined): void {
  if (hs == null) return;
  for (let i = 0; i < hs.length; i++) headerOption(t, hs[i]!);
}

function struct(t: number, s: StructObject): void {
  const at = open(t);
  const fields = s.fields;
  if (fields != null) {
    const keys = Object.keys(fields);
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const entry = open(0x0a);
      string(0x0a, k);
      value(0x12, fields[k]!);
      close(entry);
    }
  }
  close(at);
}

function value(t: number, v: ValueObject): void {
  const at = open(t);
  const o = v as { numberValue?: number; stringValue?: string; boolValue?: boolean; structValue?: StructObject; listValue?: { values?: ValueObject[] } };
  if (o.numberValue != null) {
    tag(0x11);
    ensure(8);
    buf.writeDoubleLE(Number(o.numberValue), pos);
    pos += 8;
  }
  if (o.stringValue != null) string(0x1a, String(o.stringValue));
  if (o.boolValue != null) {
    tag(0x20);
    varint(o.boolValue ? 1 : 0);
  }
  if (o.structValue != null) struct(0x2a, o.structValue);
  if (o.listValue != null) {
    const at2 = open(0x32);
    const values = o.listValue.values;
    if (values != null) for (let i = 0; i < values.length; i++) value(0x0a, values[i]!);
    close(at2);
  }
  close(at);
}

function strings(t: number, ss: readonly string[] | undefined): void {
  if (ss == null) return;
  for (let i = 0; i < ss.length; i++) string(t, ss[i]!);
}

/** Encode one CheckResponse; the bytes are a fresh Buffer the caller owns. */
export function encodeCheckResponse(r: CheckResponseObject): Buffer {
  pos = 0;
  const st = r.status;
  if (st != null) {
    const at = open(0x0a);
    if (st.code != null) {
      tag(0x08);
      int32(st.code);
    }
    if (st.message != null) string(0x12, st.message);
    close(at);
  }
  const denied = r.denied_response;
  if (denied != null) {
    const at = open(0x12);
    if (denied.status != null) {
      const at2 = open(0x0a);
      if (denied.status.code != null) {
        tag(0x08);
        int32(denied.status.code);
      }
      close(at2);
    }
    headerOptions(0x12, denied.headers);
    if (denied.body != null) string(0x1a, denied.body);
    close(at);
  }
  const ok = r.ok_response;
  if (ok != null) {
    const at = open(0x1a);
    headerOptions(0x12, ok.headers);
    strings(0x2a, ok.headers_to_remove);
    headerOptions(0x32, ok.response_headers_to_add);
    strings(0x42, ok.query_parameters_to_remove);
    close(at);
  }
  if (r.dynamic_metadata != null) struct(0x22, r.dynamic_metadata);
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  if (buf.length > 256 * 1024) buf = Buffer.allocUnsafe(16 * 1024); // an outsized response does not keep its scratch
  return out;
}
