/**
 * Finding 8 (issue 17): scope parsing differed between the token endpoint and the Check path:
 * a list element `"adm in"` was split into the scopes `adm` and `in` by the token endpoint
 * and matched whole by AuthorizationPolicy. Now one parser serves both: a string is split on
 * spaces, a list element is one scope. The property below checks that, for any scope claim,
 * the token endpoint grants a scope exactly when the Check path sees the subject holding it.
 */
import fc from 'fast-check';
import { decodeJwt } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CompiledConfig } from '../../src/pipeline/compile.js';
import { evaluate } from '../../src/pipeline/pipeline.js';
import { handleTokenRequest } from '../../src/exchange/token-endpoint.js';
import { mustCompile } from '../helpers/config.js';
import { createTestRuntime, type TestRuntime } from '../helpers/runtime.js';
import { rememberSecret } from '../helpers/secrets.js';
import { makeIdp, type Idp } from '../unit/exchange/helpers.js';
import { builtinSts, requestAuthentication, tokenForm, yamlDocs } from './configs.js';

const SCOPES = ['adm', 'in', 'read', 'adm in'];
let idp: Idp;
let rt: TestRuntime;
let cfg: CompiledConfig;

beforeAll(async () => {
  idp = await makeIdp('https://idp.f8.test');
  rt = createTestRuntime({ level: 'silent' });
  const allow = (i: number, scope: string) => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: needs-${i}, namespace: istio-system}
spec:
  action: ALLOW
  rules: [{to: [{operation: {paths: ["/s${i}/*"]}}], when: [{key: "request.auth.claims[scope]", values: [${JSON.stringify(scope)}]}]}]
`;
  cfg = mustCompile(
    yamlDocs(requestAuthentication(idp), builtinSts('https://sts.f8.test', { isDefault: true, clientAudiences: ['mcp-*'], subject: idp })) + SCOPES.map((sc, i) => allow(i, sc)).join(''),
    rt,
  );
});

async function tokenEndpointGrants(subject: string, scope: string): Promise<boolean> {
  const form = tokenForm(subject, { audience: 'mcp-tools', scope });
  const a = await handleTokenRequest(cfg.exchange.builtinSts!, form, undefined, rt);
  if (a.status !== 200) return false;
  const t = a.body['access_token'] as string;
  rememberSecret(t);
  return String(decodeJwt(t)['scope'] ?? '').split(' ').includes(scope);
}

async function checkPathHolds(subject: string, i: number): Promise<boolean> {
  const d = await evaluate({ attributes: { request: { http: { id: 'f8', method: 'GET', host: 'h', path: `/s${i}/x`, headers: { authorization: `Bearer ${subject}` } } } } }, cfg, rt);
  return d.allow;
}

describe('finding 8: one scope parser for the token endpoint and the Check path', () => {
  it('the review\'s case: a list element "adm in" grants neither "adm" nor "in"', async () => {
    const subject = await idp.sign({ sub: 'alice', scope: ['adm in', 'read'] });
    rememberSecret(subject);
    expect(await tokenEndpointGrants(subject, 'adm')).toBe(false);
    expect(await tokenEndpointGrants(subject, 'in')).toBe(false);
    expect(await tokenEndpointGrants(subject, 'read')).toBe(true);
    expect(await checkPathHolds(subject, 0)).toBe(false);
    expect(await checkPathHolds(subject, 2)).toBe(true);
  });

  it('for any scope claim, the token endpoint grants a scope exactly when the Check path sees it held', async () => {
    const claim = fc.oneof(
      fc.array(fc.constantFrom('adm', 'in', 'read', ' '), { maxLength: 6 }).map((a) => a.join(' ')),
      fc.array(fc.constantFrom('adm', 'in', 'read', 'adm in', ' read', ''), { maxLength: 4 }),
    );
    await fc.assert(
      fc.asyncProperty(claim, fc.integer({ min: 0, max: 2 }), async (scope, i) => {
        const subject = await idp.sign({ sub: 'alice', scope });
        rememberSecret(subject);
        expect(await tokenEndpointGrants(subject, SCOPES[i]!)).toBe(await checkPathHolds(subject, i));
      }),
      { numRuns: 150 },
    );
  });
});
