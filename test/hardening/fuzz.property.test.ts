/**
 * Property-based fuzzing (fast-check) of the three places hostile input enters: protobuf
 * decode -> Check, token extraction, and the config loader. Each asserts the same three
 * things: an explicit answer (a Decision with a reason code from the table, a CheckResponse
 * that encodes; a config result with located issues), never an allow that a deliberately
 * simple reference decision denies, and never a crash.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import type { RawCheckRequest } from '../../src/core/context.js';
import { REASONS } from '../../src/core/reasons.js';
import type { CompiledConfig } from '../../src/pipeline/compile.js';
import { evaluate } from '../../src/pipeline/pipeline.js';
import { loadProtos, protoRoot } from '../../src/grpc/proto.js';
import { toCheckResponse } from '../../src/respond/respond.js';
import { compileYaml, mustCompile } from '../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { rememberSecret } from '../helpers/secrets.js';
import { makeIdp, type Idp } from '../unit/exchange/helpers.js';
import { allowPaths, DENY_ADMIN, requestAuthentication, yamlDocs } from './configs.js';

let idp: Idp;
let other: Idp;
let VALID = '';
/** Signed by a key the config does not trust. */
let FORGED = '';
let rt: TestRuntime;
let cfg: CompiledConfig;
let configText = '';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 400);

beforeAll(async () => {
  idp = await makeIdp('https://idp.fuzz.test');
  other = await makeIdp('https://idp.fuzz.test', 'idp-1');
  VALID = await idp.sign({ sub: 'alice' });
  FORGED = await other.sign({ sub: 'alice' });
  rememberSecret(VALID);
  rememberSecret(FORGED);
  configText = yamlDocs(requestAuthentication(idp, '', 'fromHeaders: [{name: x-token, prefix: "Token "}], fromCookies: [session]'), DENY_ADMIN, allowPaths(['/api/*'], true));
  rt = createTestRuntime({ level: 'silent' });
  cfg = mustCompile(configText, rt);
});

// ---------------------------------------------------------------------------------------
// The reference: deliberately simple and conservative. It allows only a request whose path
// is a plain `/api/<word>`, which carries the valid token, and where no token location
// holds anything that looks like the forged token.
// ---------------------------------------------------------------------------------------

function decodeSafe(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

interface RefView {
  path: string;
  /** Values at the token locations of each jwtRule (header names lower-cased, query names decoded). */
  rules: [string[], string[]];
}

function referenceView(raw: RawCheckRequest): RefView | null {
  const http = raw.attributes?.request?.http;
  if (!http) return null;
  const headers: [string, string][] = [];
  for (const [k, v] of Object.entries(http.headers ?? {})) headers.push([k.toLowerCase(), String(v)]);
  for (const h of http.header_map?.headers ?? []) {
    const v = h.raw_value && h.raw_value.length > 0 ? Buffer.from(h.raw_value).toString('utf8') : (h.value ?? '');
    headers.push([(h.key ?? '').toLowerCase(), v]);
  }
  // Envoy fills `path` from :path; when both are there, `path` is what it forwards.
  const p = http.path || headers.find(([k]) => k === ':path')?.[1] || '';
  const q = p.indexOf('?');
  const path = q < 0 ? p : p.slice(0, q);
  const query = (http.query ?? '') + '&' + (q < 0 ? '' : p.slice(q + 1));
  // rule 1: Authorization and the access_token parameter (Istio's defaults); rule 2: x-token and the session cookie
  const rules: [string[], string[]] = [[], []];
  for (const [k, v] of headers) {
    // the prefix is case-sensitive: `bearer x` or `Basic x` is no token (Envoy jwt_authn)
    if (k === 'authorization' && v.includes('Bearer ')) rules[0].push(v);
    if (k === 'x-token') rules[1].push(v);
    if (k === 'cookie') {
      for (const c of v.split(';')) {
        const eq = c.indexOf('=');
        if (eq >= 0 && c.slice(0, eq).trim() === 'session') rules[1].push(c.slice(eq + 1));
      }
    }
  }
  // the first `access_token` parameter, its name compared decoded (Envoy jwt_authn reads the
  // first value of the decoded query)
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const name = decodeSafe(eq < 0 ? part : part.slice(0, eq));
    if (name === 'access_token') {
      rules[0].push(decodeSafe(eq < 0 ? '' : part.slice(eq + 1)));
      break;
    }
  }
  return { path, rules };
}

/**
 * Allowed only for a plain `/api/<word>` path (the word may be empty) and a jwtRule whose locations carry the valid
 * token and nothing signed with the untrusted key (one valid token for any rule is enough).
 */
function referenceAllows(raw: RawCheckRequest): boolean {
  const v = referenceView(raw);
  if (!v) return false;
  // `/api/*` is Istio's prefix `/api/`: the bare `/api/` matches it too.
  if (!/^\/api\/[a-z0-9]*$/.test(v.path)) return false;
  const forgedSig = FORGED.split('.')[2]!;
  return v.rules.some((locs) => locs.some((l) => l.includes(VALID)) && !locs.some((l) => l.includes(forgedSig)));
}

/** Evaluate, encode the response, and check the properties; the Decision for more checks. */
async function checkProperties(raw: RawCheckRequest): Promise<Awaited<ReturnType<typeof evaluate>>> {
  const d = await evaluate(raw, cfg, rt, { deadline: Date.now() + 10_000 });
  expect(Object.keys(REASONS)).toContain(d.reason);
  expect(d.allow).toBe(d.reason === 'OK');
  const resp = toCheckResponse(d, { reasonHeader: false });
  expect(resp.status.code === 0).toBe(d.allow);
  if (!d.allow) expect(resp.denied_response?.status.code).toBeGreaterThanOrEqual(400);
  const CheckResponse = protoRoot().lookupType('envoy.service.auth.v3.CheckResponse');
  expect(CheckResponse.verify(CheckResponse.fromObject(resp))).toBeNull();
  if (d.allow) expect(referenceAllows(raw), `allowed, but the reference denies: ${JSON.stringify(raw).slice(0, 600)}`).toBe(true);
  return d;
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

const pathGen = () =>
  fc.oneof(
    fc.constantFrom('/api/x', '/api/items', '/admin/x', '/api/../admin/x', '/api/%2e%2e/admin', '/api//x', '/API/x', '/api/x?access_token=z', '/', ''),
    fc.array(fc.constantFrom('/', 'api', 'admin', '.', '..', '%2e', '%2F', '%00', '\\', 'x', '?', '#', '&'), { maxLength: 8 }).map((a) => a.join('')),
  );

const tokenGen = () =>
  fc.oneof(
    fc.constant(VALID),
    fc.constant(FORGED),
    fc.constant(`${VALID.slice(0, -4)}AAAA`),
    fc.constant(VALID.split('.').slice(0, 2).join('.')),
    fc.string({ maxLength: 30 }),
    fc.constant(`${VALID}.${VALID}`),
  );

const authValue = () =>
  fc.oneof(
    tokenGen().map((t) => `Bearer ${t}`),
    tokenGen().map((t) => `bearer ${t}`),
    tokenGen().map((t) => `Basic ${t}`),
    fc.tuple(tokenGen(), tokenGen()).map(([a, b]) => `Bearer ${a}, Bearer ${b}`),
    fc.tuple(tokenGen(), fc.constantFrom(' ', '\t', ',', ';', '"')).map(([t, c]) => `Bearer${c}${t}${c}`),
    fc.string({ maxLength: 20 }),
  );

const queryGen = () =>
  fc.array(
    fc.tuple(fc.constantFrom('access_token', 'access%5Ftoken', '%61ccess_token', 'ACCESS_TOKEN', 'x', 'access_token[]'), tokenGen()).map(([k, v]) => `${k}=${encodeURIComponent(v)}`),
    { maxLength: 3 },
  ).map((a) => a.join('&'));

const requestGen = () =>
  fc
    .record({
      path: pathGen(),
      query: queryGen(),
      auth: fc.option(authValue(), { nil: undefined }),
      xToken: fc.option(tokenGen().map((t) => `Token ${t}`), { nil: undefined }),
      cookie: fc.option(fc.tuple(tokenGen(), fc.constantFrom('session', 'Session', ' session ', 'other')).map(([t, n]) => `${n}=${t}; a=b`), { nil: undefined }),
      rawAuth: fc.option(authValue(), { nil: undefined }),
      upperKey: fc.boolean(),
    })
    .map((r): RawCheckRequest => {
      const headers: Record<string, string> = { ':method': 'GET', ':authority': 'api.example.com' };
      const fullPath = r.query ? `${r.path}${r.path.includes('?') ? '&' : '?'}${r.query}` : r.path;
      headers[':path'] = fullPath;
      if (r.auth !== undefined) headers[r.upperKey ? 'Authorization' : 'authorization'] = r.auth;
      if (r.xToken !== undefined) headers['x-token'] = r.xToken;
      if (r.cookie !== undefined) headers['cookie'] = r.cookie;
      return {
        attributes: {
          request: {
            http: {
              id: 'fuzz',
              method: 'GET',
              host: 'api.example.com',
              path: fullPath,
              headers,
              header_map: r.rawAuth !== undefined ? { headers: [{ key: 'authorization', raw_value: Buffer.from(r.rawAuth) }] } : undefined,
            },
          },
        },
      };
    });

describe('fuzz: protobuf decode -> Check', () => {
  it('structured requests', async () => {
    await fc.assert(fc.asyncProperty(requestGen(), async (raw) => void (await checkProperties(raw))), { numRuns: RUNS });
  });

  it('byte-level mutations of encoded requests', async () => {
    const Req = protoRoot().lookupType('envoy.service.auth.v3.CheckRequest');
    const deserialize = loadProtos().authorization['Check']!.requestDeserialize as (b: Buffer) => RawCheckRequest;
    const mutation = fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('flip', 'truncate', 'insert', 'duplicate', 'delete'),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }),
      len: fc.integer({ min: 1, max: 40 }),
    });
    await fc.assert(
      fc.asyncProperty(requestGen(), fc.array(mutation, { minLength: 1, maxLength: 4 }), async (raw, muts) => {
        let buf = Buffer.from(Req.encode(Req.fromObject(raw as Record<string, unknown>)).finish());
        for (const m of muts) {
          const at = buf.length === 0 ? 0 : m.at % buf.length;
          if (m.kind === 'flip') buf[at] = buf[at]! ^ m.bytes[0]!;
          else if (m.kind === 'truncate') buf = buf.subarray(0, at);
          else if (m.kind === 'insert') buf = Buffer.concat([buf.subarray(0, at), Buffer.from(m.bytes), buf.subarray(at)]);
          else if (m.kind === 'duplicate') buf = Buffer.concat([buf.subarray(0, at + m.len), buf.subarray(at, at + m.len), buf.subarray(at + m.len)]);
          else buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.len)]);
        }
        let decoded: RawCheckRequest;
        try {
          decoded = deserialize(buf);
        } catch {
          return; // grpc-js answers the RPC with an error status before Check runs; Envoy denies
        }
        await checkProperties(decoded);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: token extraction', () => {
  it('every combination of token locations, prefixes and separators', async () => {
    await fc.assert(
      fc.asyncProperty(requestGen(), async (raw) => {
        const d = await checkProperties(raw);
        if (!d.allow) return;
        // An allowed request never carries a user token it was admitted with upstream: a
        // header location holding exactly the valid token is removed.
        const h = raw.attributes!.request!.http!.headers!;
        const auth = h['authorization'] ?? h['Authorization'];
        if (auth === `Bearer ${VALID}` && !raw.attributes!.request!.http!.header_map) expect([...d.upstream.remove]).toContain('authorization');
        if (h['x-token'] === `Token ${VALID}`) expect([...d.upstream.remove]).toContain('x-token');
        // A query token is removed by every spelling the client used for its name.
        const path = raw.attributes!.request!.http!.path ?? '';
        const query = path.includes('?') ? path.slice(path.indexOf('?') + 1) : '';
        for (const part of query.split('&')) {
          const name = part.split('=')[0]!;
          if (decodeSafe(name) === 'access_token' && decodeSafe(part.slice(name.length + 1)) === VALID) expect([...d.upstream.removeQuery]).toContain(name);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('fuzz: config loader', () => {
  /** Requests whose reference decision is known for the fuzz config. */
  const probes = (): [RawCheckRequest, boolean][] => {
    const req = (path: string, auth?: string): RawCheckRequest => ({
      attributes: { request: { http: { id: 'p', method: 'GET', host: 'h', path, headers: auth ? { authorization: `Bearer ${auth}` } : {} } } },
    });
    return [
      [req('/api/x', VALID), true],
      [req('/api/x'), false],
      [req('/admin/x', VALID), false],
      [req('/api/x', FORGED), false],
      [req('/other', VALID), false],
    ];
  };

  it('arbitrary corruption: an explicit, located answer, never a crash', () => {
    fc.assert(
      fc.property(
        fc.nat(),
        fc.constantFrom('cut', 'insert', 'replace', 'delete'),
        fc.string({ maxLength: 12 }).chain((s) => fc.constantFrom(s, ':', '- ', '{', '[', '"', '&a', '*a', '!!binary', '\t', '---\n', '\u0000', '%YAML 1.1\n')),
        (at, kind, text) => {
          const i = at % (configText.length + 1);
          const t =
            kind === 'cut' ? configText.slice(0, i)
            : kind === 'insert' ? configText.slice(0, i) + text + configText.slice(i)
            : kind === 'replace' ? configText.slice(0, i) + text + configText.slice(i + text.length)
            : configText.slice(0, i) + configText.slice(i + 8);
          const r = compileYaml(t, createTestRuntime({ level: 'silent' }));
          for (const issue of r.issues) {
            expect(issue.file).toBe('test.yaml');
            expect(issue.line).toBeGreaterThanOrEqual(1);
            expect(issue.col).toBeGreaterThanOrEqual(1);
            expect(issue.document).toBeGreaterThanOrEqual(0);
            expect(issue.field.length).toBeGreaterThan(0);
            expect(issue.message.length).toBeGreaterThan(0);
          }
          if (!r.ok) expect(r.issues.some((x) => x.severity === 'error')).toBe(true);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('rewritings that keep the meaning: the decisions of the reference config, never more', async () => {
    const docs = configText.split(/^---\n/m);
    await fc.assert(
      fc.asyncProperty(
        fc.shuffledSubarray(docs.map((_, i) => i), { minLength: docs.length, maxLength: docs.length }),
        fc.constantFrom('block', 'flow', 'as-is'),
        fc.boolean(),
        fc.boolean(),
        async (order, style, comments, quotes) => {
          const out = order.map((i) => {
            let d = docs[i]!;
            if (style !== 'as-is') {
              const doc = parseDocument(d);
              d = stringify(doc.toJS(), { collectionStyle: style === 'flow' ? 'flow' : 'block', defaultStringType: quotes ? 'QUOTE_DOUBLE' : 'PLAIN', lineWidth: 0 });
            }
            return comments ? `# comment\n\n${d}\n# trailing\n` : d;
          });
          const r = compileYaml(out.join('---\n'), createTestRuntime({ level: 'silent' }));
          expect(r.ok, r.ok ? '' : r.issues.map((x) => x.message).join('; ')).toBe(true);
          if (!r.ok) return;
          for (const [req, want] of probes()) {
            const d = await evaluate(req, r.config, rt, { deadline: Date.now() + 10_000 });
            expect(d.allow).toBe(want);
          }
        },
      ),
      { numRuns: Math.min(RUNS, 100) },
    );
  });
});
