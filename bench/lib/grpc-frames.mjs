// gRPC framing and CheckRequest / CheckResponse (de)serialization for the benchmark, using
// the server's own proto loading (dist/src/grpc/proto.js), so frames are exactly what the
// server decodes.
import { protoRoot } from '../../dist/src/grpc/proto.js';

let types;
function t() {
  if (!types) {
    const root = protoRoot();
    types = {
      req: root.lookupType('envoy.service.auth.v3.CheckRequest'),
      resp: root.lookupType('envoy.service.auth.v3.CheckResponse'),
    };
  }
  return types;
}

export const CHECK_PATH = '/envoy.service.auth.v3.Authorization/Check';

/** A length-prefixed gRPC message: flag 0, 4-byte big-endian length, protobuf bytes. */
export function frame(bytes) {
  const out = Buffer.allocUnsafe(5 + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).copy(out, 5);
  return out;
}

/** Encode a CheckRequest object (snake_case, as grpc-js / Envoy would send it) to a gRPC frame. */
export function checkRequestFrame(obj) {
  const { req } = t();
  const msg = req.fromObject(obj);
  return frame(req.encode(msg).finish());
}

export function encodeCheckResponse(obj) {
  const { resp } = t();
  return Buffer.from(resp.encode(resp.fromObject(obj)).finish());
}

/** Decode one gRPC-framed CheckResponse (the whole body of a unary reply). */
export function decodeCheckResponse(body) {
  if (body.length < 5) throw new Error(`short gRPC body (${body.length} bytes)`);
  const len = body.readUInt32BE(1);
  const { resp } = t();
  return resp.toObject(resp.decode(body.subarray(5, 5 + len)), { defaults: false, enums: Number });
}

/** A CheckRequest as Envoy sends it (same shape as test/helpers/server.ts httpRequest()). */
export function httpCheckRequest(opts = {}) {
  const method = opts.method ?? 'GET';
  const path = opts.path ?? '/';
  const host = opts.host ?? 'mcp.example.com';
  return {
    attributes: {
      source: {
        address: { socket_address: { address: opts.sourceIp ?? '10.0.0.7', port_value: 40000 } },
        principal: opts.sourcePrincipal ?? '',
      },
      destination: {
        address: { socket_address: { address: '10.0.0.9', port_value: 8080 } },
        principal: opts.destinationPrincipal ?? '',
      },
      request: {
        http: {
          id: opts.id ?? 'bench-1',
          method,
          path,
          host,
          scheme: 'https',
          protocol: 'HTTP/1.1',
          headers: {
            ':method': method,
            ':path': path,
            ':authority': host,
            'user-agent': 'obo-authz-bench/1',
            'x-request-id': opts.id ?? 'bench-1',
            ...(opts.headers ?? {}),
          },
        },
      },
      context_extensions: opts.contextExtensions ?? {},
    },
  };
}

/**
 * Cheap classification of a CheckResponse without a full decode (used on every response
 * by the load generator): top-level field 3 = ok_response (allow), 2 = denied_response,
 * 5 = error_response; status (field 1) code (its field 1). Returns { code, kind, http }.
 */
export function classifyResponseBody(body) {
  if (body.length < 5) return { code: -1, kind: 'short', http: 0 };
  const end = Math.min(body.length, 5 + body.readUInt32BE(1));
  let i = 5;
  let code = 0;
  let kind = 'none';
  let http = 0;
  const varint = () => {
    let r = 0;
    let s = 0;
    for (;;) {
      const b = body[i++];
      r += (b & 0x7f) * 2 ** s;
      if (b < 0x80) return r;
      s += 7;
    }
  };
  while (i < end) {
    const tag = varint();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (wt === 0) {
      varint();
      continue;
    }
    if (wt !== 2) return { code: -1, kind: 'bad-wire', http: 0 };
    const len = varint();
    const start = i;
    if (field === 1) {
      // google.rpc.Status { int32 code = 1; ... }
      while (i < start + len) {
        const tg = varint();
        if (tg === 0x08) code = varint();
        else if ((tg & 7) === 2) i += varint();
        else if ((tg & 7) === 0) varint();
        else break;
      }
    } else if (field === 3) kind = 'allow';
    else if (field === 2 || field === 5) {
      kind = field === 2 ? 'deny' : 'error';
      // DeniedHttpResponse { HttpStatus status = 1 { code = 1 } }
      while (i < start + len) {
        const tg = varint();
        if (tg === 0x0a) {
          const l = varint();
          const s2 = i;
          while (i < s2 + l) {
            const t2 = varint();
            if (t2 === 0x08) http = varint();
            else if ((t2 & 7) === 2) i += varint();
            else varint();
          }
          i = s2 + l;
        } else if ((tg & 7) === 2) i += varint();
        else if ((tg & 7) === 0) varint();
        else break;
      }
    }
    i = start + len;
  }
  if (kind === 'none' && code === 0) kind = 'allow';
  return { code, kind, http };
}
