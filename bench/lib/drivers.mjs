// Load drivers: h2load (one prebuilt frame per scenario) and bench/loadgen.mjs (distinct
// frames), plus a one-request probe that decodes the full CheckResponse.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import { CHECK_PATH, decodeCheckResponse } from './grpc-frames.mjs';
import { Histogram } from './hist.mjs';
import { run } from './procs.mjs';

const here = new URL('..', import.meta.url).pathname;

/** Envoy always sends a deadline; ours (envoy/envoy.yaml) is 1 s. */
export const GRPC_TIMEOUT = '1000m';

/**
 * h2load over HTTP/2 with one prebuilt gRPC frame, or (`http`) over HTTP/1.1 keep-alive with
 * plain requests: `http: { path, headers }` (`:method: POST` sets the method), one request in flight per connection
 * (no pipelining, as proxies do), `connections` connections.
 *
 * The request body (`-d`) is uploaded under the server's receive windows (grpc-js keeps node's
 * 65,535-byte stream and connection windows and returns credit as it reads); h2load's `-w`/`-W`
 * only size h2load's own windows, for the answers, so they are left at their defaults.
 */
export async function runH2load({ target, frameFile, durationSec, warmupSec, connections, streams, tmpDir, tag, http }) {
  const log = join(tmpDir, `h2load-${tag}.log`);
  const request = http
    ? ['--h1', ...http.headers.flatMap((h) => ['-H', h]), `http://${target}${http.path}`]
    : ['-d', frameFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-H', `grpc-timeout: ${GRPC_TIMEOUT}`, `http://${target}${CHECK_PATH}`];
  const args = ['-t1', `-c${connections}`, `-m${http ? 1 : streams}`, '-D', String(durationSec), '--warm-up-time', String(warmupSec), '--log-file', log, ...request];
  const r = await run('h2load', args);
  if (r.code !== 0) throw new Error(`h2load failed (${r.code}): ${r.stderr || r.stdout}`);
  const fin = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(r.stdout);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(r.stdout);
  if (!fin || !req) throw new Error(`cannot parse h2load output:\n${r.stdout}`);
  const hist = new Histogram();
  let non200 = 0;
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    if (!line) continue;
    const [, status, us] = line.split('\t');
    // status 0: still in flight when the measurement window closed (no answer yet)
    if (status === '0') continue;
    if (status !== '200') non200++;
    hist.record(Number(us));
  }
  rmSync(log, { force: true });
  return {
    tool: 'h2load',
    requests: Number(req[3]),
    rps: Number(fin[2]),
    p50us: hist.quantile(0.5),
    p99us: hist.quantile(0.99),
    meanUs: hist.n ? hist.sum / hist.n : NaN,
    errors: Number(req[5]) + Number(req[6]) + Number(req[7]) + non200,
    hist,
  };
}

export async function runLoadgen(spec, tmpDir, tag) {
  const file = join(tmpDir, `loadgen-${tag}.json`);
  writeFileSync(file, JSON.stringify(spec));
  const r = await run(process.execPath, [join(here, 'loadgen.mjs'), file]);
  if (r.code !== 0) throw new Error(`loadgen failed (${r.code}): ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  return { tool: 'node', ...j };
}

/** Send one frame, return { grpcStatus, response (decoded CheckResponse) }. */
export function probe(target, frameBytes, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`http://${target}`);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`probe of ${target} timed out`));
    }, timeoutMs);
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    const req = s.request({ ':method': 'POST', ':path': CHECK_PATH, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': GRPC_TIMEOUT });
    const chunks = [];
    let grpcStatus = null;
    let grpcMessage = '';
    req.on('response', (h) => {
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    });
    req.on('trailers', (h) => {
      grpcStatus = String(h['grpc-status']);
      grpcMessage = h['grpc-message'] ?? '';
    });
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      clearTimeout(t);
      s.close();
      const body = Buffer.concat(chunks);
      try {
        resolve({ grpcStatus, grpcMessage, response: body.length ? decodeCheckResponse(body) : null });
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', (e) => {
      clearTimeout(t);
      s.destroy();
      reject(e);
    });
    req.end(frameBytes);
  });
}

/** One HTTP authorization request (the h1 scenarios' request): { kind, http, reason, headers }. */
export async function probeHttp(target, { path, headers }) {
  const h = Object.fromEntries(headers.filter((x) => !x.startsWith(':')).map((x) => [x.slice(0, x.indexOf(':')), x.slice(x.indexOf(':') + 1).trim()]));
  const res = await fetch(`http://${target}${path}`, { method: 'POST', headers: h, body: '' });
  await res.text();
  const names = [...res.headers.keys()];
  return { kind: res.status === 200 ? 'allow' : 'deny', http: res.status, reason: res.headers.get('x-obo-authz-reason') ?? '', headers: names };
}

/** Decision summary of a decoded CheckResponse: { kind: allow|deny|error, http, reason, body }. */
export function summarize(p) {
  if (p.grpcStatus !== '0' || !p.response) return { kind: 'rpc-error', http: 0, reason: `grpc-status ${p.grpcStatus} ${p.grpcMessage}` };
  const r = p.response;
  const code = r.status?.code ?? 0;
  const reason = r.dynamic_metadata?.fields?.reason?.stringValue ?? '';
  if (r.ok_response && code === 0) return { kind: 'allow', http: 200, reason, headers: (r.ok_response.headers ?? []).map((h) => h.header?.key) };
  const d = r.denied_response ?? r.error_response;
  return { kind: r.denied_response ? 'deny' : 'error', http: d?.status?.code ?? 0, reason, body: d?.body ?? '' };
}

/** Prometheus text -> sum of a counter by one label. */
export async function counterByLabel(httpAddress, name, label) {
  const out = {};
  let text;
  try {
    const res = await fetch(`http://${httpAddress}/metrics`);
    text = await res.text();
  } catch {
    return out;
  }
  const re = new RegExp(`^${name}\\{([^}]*)\\}\\s+([0-9.eE+-]+)$`, 'gm');
  for (const m of text.matchAll(re)) {
    const lv = new RegExp(`${label}="([^"]*)"`).exec(m[1])?.[1] ?? '';
    out[lv] = (out[lv] ?? 0) + Number(m[2]);
  }
  return out;
}

/** Unlabelled gauges from /metrics (e.g. the default nodejs_* process metrics), by full name. */
export async function gauges(httpAddress, names) {
  const out = {};
  let text;
  try {
    text = await (await fetch(`http://${httpAddress}/metrics`)).text();
  } catch {
    return out;
  }
  for (const n of names) {
    const m = new RegExp(`^${n}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)$`, 'm').exec(text);
    if (m) out[n] = Number(m[1]);
  }
  return out;
}
