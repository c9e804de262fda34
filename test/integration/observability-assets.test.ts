/**
 * The Grafana dashboard and Prometheus alert rules in deploy/observability/ (and the metric
 * tables of the docs) only reference metrics a running server exports: a real server with a
 * remote JWKS (loopback), an API-key validator and a built-in STS with an exchange is driven
 * through every stage, /metrics is scraped, and every metric name, every label a selector or
 * `by (...)` uses, and every reason code an expression matches is looked up in it.
 */
import { createServer, type Server } from 'node:http';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { hashApiKey } from '../../src/authn/api-keys.js';
import { REASONS } from '../../src/core/reasons.js';
import { Metrics } from '../../src/observability/metrics.js';
import { startServer, type RunningServer } from '../../src/cli/serve.js';
import { rememberSecret } from '../helpers/secrets.js';
import { exchangeOnApiYaml } from '../helpers/config.js';
import { createTestRuntime } from '../helpers/runtime.js';
import { httpRequest } from '../helpers/server.js';
import { sendCheck } from '../../src/cli/check.js';
import { tempDir } from '../helpers/tmp.js';

interface Family {
  readonly type: string;
  readonly labels: Set<string>;
}

const TARGET_LABELS = new Set(['instance', 'job']);
let families: Map<string, Family>;
let idp: Server;
let server: RunningServer;
const dir = tempDir('obo-assets-');

beforeAll(async () => {
  const kp = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'ES256' };
  idp = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
  await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r));
  const apiKey = 'obo_assets-test-key-0123456789abcdef';
  rememberSecret(apiKey);
  writeFileSync(join(dir, 'keys.txt'), `keys:\n- {name: agent, hash: ${hashApiKey(apiKey)}}\n`);
  writeFileSync(
    join(dir, 'config.yaml'),
    `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: users, namespace: default}
spec:
  jwtRules: [{issuer: https://idp.assets.test, jwksUri: "http://127.0.0.1:${(idp.address() as { port: number }).port}/jwks"}]
---
apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: keys, namespace: default}
spec:
  type: APIKey
  order: 10
  apiKey: {file: keys.txt, fromHeaders: [{name: x-api-key}]}
---
${exchangeOnApiYaml('http://sts.assets.test')}`,
  );
  const runtime = { ...createTestRuntime(), metrics: new Metrics({ collectDefault: true }) };
  // decision lines to a file, as with --decision-log (the server's writer registers the drop counter)
  server = await startServer({ configPaths: [dir], grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', runtime, watch: false, decisionLogPath: join(dir, 'logs', 'decisions.jsonl') });
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://idp.assets.test').setSubject('u').setIssuedAt(now).setExpirationTime(now + 600).sign(kp.privateKey);
  rememberSecret(token);
  // every stage once: a JWT (fetch, verify), an API key, an exchange, a deny, the STS's JWKS
  await sendCheck(server.grpcAddress, httpRequest({ path: '/api', headers: { authorization: `Bearer ${token}` } }), 5000);
  await sendCheck(server.grpcAddress, httpRequest({ path: '/x', headers: { 'x-api-key': apiKey } }), 5000);
  await sendCheck(server.grpcAddress, httpRequest({ path: '/x', headers: { authorization: 'Bearer not.a.jwt' } }), 5000);
  await fetch(`http://${server.httpAddress}/.well-known/jwks.json`);

  const text = await (await fetch(`http://${server.httpAddress}/metrics`)).text();
  families = new Map();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const labelNames = (runtime.metrics.registry.getSingleMetric(m[1]!) as unknown as { labelNames?: readonly string[] } | undefined)?.labelNames ?? [];
    families.set(m[1]!, { type: m[2]!, labels: new Set(labelNames) });
  }
  for (const m of text.matchAll(/^(obo_authz_\w+)\{([^}]*)\}/gm)) {
    const f = families.get(m[1]!.replace(/_(bucket|sum|count)$/, '')) ?? families.get(m[1]!);
    for (const l of m[2]!.matchAll(/(\w+)="/g)) f?.labels.add(l[1]!);
  }
});

afterAll(async () => {
  await server?.close();
  await new Promise((r) => idp?.close(r));
});

/** The family a sample name belongs to (histogram series end in _bucket, _sum, _count). */
function family(name: string): { family: Family; suffix: string } | undefined {
  const f = families.get(name);
  if (f) return { family: f, suffix: '' };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const h = m ? families.get(m[1]!) : undefined;
  return h && (h.type === 'histogram' || h.type === 'summary') ? { family: h, suffix: m![2]! } : undefined;
}

/** Problems of one PromQL expression: unknown metrics, labels, reason codes. */
function problems(expr: string): string[] {
  const out: string[] = [];
  const used = new Set<string>();
  for (const m of expr.matchAll(/\b(obo_authz_\w+)(\{([^}]*)\})?/g)) {
    const f = family(m[1]!);
    if (!f) {
      out.push(`unknown metric ${m[1]}`);
      continue;
    }
    for (const l of f.family.labels) used.add(l);
    for (const l of (m[3] ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
      const [, name, , value] = l;
      if (!f.family.labels.has(name!) && !TARGET_LABELS.has(name!) && !(name === 'le' && f.suffix === 'bucket')) out.push(`${m[1]}: no label ${name}`);
      if (name === 'reason') for (const r of value!.split('|')) if (!(r in REASONS)) out.push(`${m[1]}: unknown reason code ${r}`);
    }
  }
  for (const m of expr.matchAll(/\b(?:by|on|without)\s*\(([^)]*)\)/g)) {
    for (const l of m[1]!.split(',').map((x) => x.trim()).filter(Boolean)) {
      if (!used.has(l) && !TARGET_LABELS.has(l) && l !== 'le') out.push(`by/on (${l}): no metric in the expression has it`);
    }
  }
  return out;
}

describe('deploy/observability', () => {
  it('the checker finds mistakes (a renamed metric, a label that does not exist, a reason code that does not)', () => {
    expect(problems('rate(obo_authz_check_total[5m])')).toEqual(['unknown metric obo_authz_check_total']);
    expect(problems('sum by (policy) (rate(obo_authz_checks_total[5m]))')).toEqual(['by/on (policy): no metric in the expression has it']);
    expect(problems('rate(obo_authz_checks_total{reason="ERR_NOPE"}[5m])')).toEqual(['obo_authz_checks_total: unknown reason code ERR_NOPE']);
    expect(problems('rate(obo_authz_jwks_fetches_total{result="x"}[5m])')).toEqual(['obo_authz_jwks_fetches_total: no label result']);
    expect(problems('histogram_quantile(0.9, sum by (le) (rate(obo_authz_check_duration_seconds_bucket[5m])))')).toEqual([]);
  });

  it('every Grafana panel queries metrics, labels and reason codes the server exports', () => {
    const dash = JSON.parse(readFileSync('deploy/observability/grafana-dashboard.json', 'utf8')) as { uid: string; panels: { id: number; type: string; title: string; targets?: { expr: string }[] }[] };
    expect(dash.uid).toBe('obo-authz');
    const ids = dash.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr] as const));
    expect(exprs.length).toBeGreaterThan(20);
    const bad = exprs.flatMap(([title, e]) => problems(e).map((p) => `${title}: ${p}`));
    expect(bad).toEqual([]);
  });

  it('every alert rule is complete and uses metrics, labels and reason codes the server exports', () => {
    const rules = parseYaml(readFileSync('deploy/observability/prometheus-rules.yaml', 'utf8')) as { groups: { name: string; rules: { alert: string; expr: string; labels: { severity: string }; annotations: { summary: string; description: string } }[] }[] };
    const all = rules.groups.flatMap((g) => g.rules);
    expect(all.length).toBeGreaterThanOrEqual(8);
    for (const r of all) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^OboAuthz[A-Z]\w+$/);
      expect(['critical', 'warning', 'info']).toContain(r.labels.severity);
      expect(r.annotations.summary.length).toBeGreaterThan(10);
      expect(r.annotations.description.length).toBeGreaterThan(10);
      expect(problems(r.expr), r.alert).toEqual([]);
    }
  });

  it('every metric the docs name is exported (metrics of Redis-only features: registered in the code)', () => {
    // The shared exchange cache and the session store need a redis-server, which this test does
    // not start: their metric names are looked up where the code registers them.
    const src = readdirSync('src', { recursive: true }).map(String).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(join('src', f), 'utf8')).join('\n');
    const registered = new Set([...src.matchAll(/\.(?:counter|gauge|histogram)\(\s*'([a-z0-9_]+)'/g)].map((m) => `obo_authz_${m[1]}`));
    const missing: string[] = [];
    for (const f of ['README.md', 'docs/operations.md', 'docs/operations-metrics.md', 'docs/configuration/authentication.md', 'docs/configuration/token-exchange.md', 'docs/configuration/credentials.md']) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bobo_authz_[a-z0-9_]+[a-z0-9]\b/g)) {
        const name = m[0].replace(/_\*$/, '');
        if (!family(name) && !registered.has(name) && !/^obo_authz_(process|nodejs)$/.test(name)) missing.push(`${f}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
