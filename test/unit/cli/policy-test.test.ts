/** `obo-authz test`: tables of requests and expected decisions, run offline with tokens minted from table keys. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../../helpers/cli.js';
import { tempDir } from '../../helpers/tmp.js';

const dir = tempDir('obo-policy-test-');
const IDP_KEY = resolve('examples/demo-keys/demo-idp.private.jwk.json');

function write(rel: string, text: string): string {
  const p = join(dir, rel);
  mkdirSync(resolve(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

/** A config whose issuer's keys are fetched (jwksUri or discovery): the table serves them. */
function remoteKeysConfig(name: string, rule: string): string {
  return write(
    `${name}/config/policies.yaml`,
    `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: users, namespace: default}
spec:
  jwtRules:
  - issuer: https://login.example.test
    audiences: [api]
${rule}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: users-only, namespace: default}
spec:
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["https://login.example.test/*"]}}]}]
`,
  );
}

function table(name: string, key: string, extra = ''): string {
  return write(
    `${name}/tests/t.yaml`,
    `config: ../config
keys:
  idp: {file: ${IDP_KEY}, issuer: https://login.example.test, audience: api${key}}
cases:
  - name: a user is allowed
    request: {token: {key: idp, claims: {sub: u1}}}
    expect: {decision: allow, principal: https://login.example.test/u1}
  - name: nobody is denied
    expect: {status: 403, reason: ERR_RBAC_DENIED}
${extra}`,
  );
}

describe('obo-authz test', () => {
  it('the shipped example tables pass', async () => {
    const r = await cli('test', 'examples/quickstart/tests', 'envoy/tests');
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^\d+ case\(s\) in 2 table\(s\): \d+ passed, 0 failed \(\d+ ms, \d+ cases\/s\)$/m);
  });

  it('serves table keys at the jwksUri they name and through OIDC discovery of their issuer; nothing else is reachable', async () => {
    remoteKeysConfig('uri', '    jwksUri: https://keys.example.test/jwks');
    const uri = await cli('test', table('uri', ', jwksUri: "https://keys.example.test/jwks"'));
    expect(uri.code, uri.out + uri.err).toBe(0);
    remoteKeysConfig('oidc', '');
    const oidc = await cli('test', table('oidc', ''));
    expect(oidc.code, oidc.out + oidc.err).toBe(0);
    // a JWKS the table does not serve: the IdP is unreachable, as for a server without network
    remoteKeysConfig('away', '    jwksUri: https://elsewhere.example.test/jwks');
    const away = await cli('test', table('away', ''));
    expect(away.code).toBe(1);
    expect(away.out).toContain('decision: expected "allow", got "deny"');
    const why = await cli('test', join(dir, 'away/tests/t.yaml'), '--format', 'json');
    expect(why.out).toContain('"expected": "allow"');
  });

  it('a failing case prints the file, line, name and each differing field; exit 1', async () => {
    remoteKeysConfig('fail', '    jwksUri: https://keys.example.test/jwks');
    const t = table(
      'fail',
      ', jwksUri: "https://keys.example.test/jwks"',
      `  - name: an expired token
    request: {token: {key: idp, claims: {sub: u2}, expiresIn: -1h}}
    expect: {decision: allow, reason: OK, principal: https://login.example.test/u2}
`,
    );
    const r = await cli('test', t, '--verbose');
    expect(r.code).toBe(1);
    expect(r.out).toContain(`FAIL  ${t}:10 an expired token`);
    expect(r.out).toContain('      decision: expected "allow", got "deny"');
    expect(r.out).toContain('      reason: expected "OK", got "ERR_JWT_EXPIRED"');
    expect(r.out).toContain('      principal: expected "https://login.example.test/u2", got null');
    expect(r.out).toContain('[authn]'); // --verbose: the trace of the failure
    expect(r.out).toContain(`ok    ${t}:5 a user is allowed`);
    expect(r.out).toMatch(/3 case\(s\) in 1 table\(s\): 2 passed, 1 failed/);
    const only = await cli('test', t, '--run', 'nobody');
    expect(only.code).toBe(0);
    expect(only.out).toMatch(/^1 case\(s\)/m);
    const json = JSON.parse((await cli('test', t, '--format', 'json')).out) as { failed: number; tables: { cases: { name: string; differences: { field: string }[] }[] }[] };
    expect(json.failed).toBe(1);
    expect(json.tables[0]!.cases[2]!.differences.map((d) => d.field)).toEqual(['decision', 'reason', 'principal']);
  });

  it('upstream expectations: headers set, absent, removed, and the claims of the exchanged token', async () => {
    const t = write(
      'up/t.yaml',
      `config: ${resolve('examples/quickstart')}
keys: {idp: {file: ${IDP_KEY}, issuer: https://demo-idp.obo-authz.example, audience: mcp-demo}}
defaults: {request: {host: mcp.example.com, method: POST, path: /mcp}}
cases:
  - name: wrong expectations everywhere
    request: {token: {key: idp, claims: {sub: carol, scope: "mcp:tools"}}, headers: {X-Actor-Token: spoofed}}
    expect:
      upstream:
        headers: {x-user-sub: dave, x-missing: "*"}
        absent: [x-user-sub]
        removed: [x-never]
        token: {claims: {sub: dave, act: null}}
`,
    );
    const r = await cli('test', t);
    expect(r.code).toBe(1);
    for (const line of [
      'upstream.headers.x-user-sub: expected "dave", got "carol"',
      'upstream.headers.x-missing: expected (set), got (not set)',
      'upstream.absent.x-user-sub: expected (not set), got "carol"',
      'upstream.removed.x-never: expected (removed), got (not removed)',
      'upstream.token.claims.sub: expected "dave", got "carol"',
    ]) expect(r.out).toContain(line);
    expect(r.out).not.toContain('claims.act');
  });

  it('a table with an unknown field, a missing expectation or an unknown key is exit 2, located', async () => {
    const t = write('bad/t.yaml', `config: ${resolve('examples/quickstart')}\ncases:\n  - name: x\n    expect: {stauts: 403}\n`);
    const r = await cli('test', t);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${t}:4:14: cases[0].expect.stauts: unknown field "stauts"`);
    const t2 = write('bad/t2.yaml', `config: ${resolve('examples/quickstart')}\ncases:\n  - name: y\n    expect: {}\n  - name: z\n    request: {token: {key: nope}}\n    expect: {status: 403}\n`);
    const r2 = await cli('test', t2);
    expect(r2.code).toBe(2);
    expect(r2.err).toContain(`${t2}:4:13: cases[0].expect: name at least one expectation`);
    expect(r2.err).toContain('cases[1].request.token: no key "nope" in keys');
    const noConfig = write('noconf/t.yaml', 'cases: [{name: a, expect: {status: 200}}]\n');
    const n = await cli('test', noConfig);
    expect(n.code).toBe(2);
    expect(n.err).toContain('config: name the config under test (or pass --config)');
    expect((await cli('test', join(dir, 'does-not-exist'))).err).toContain('no such file or folder');
  });

  it('--config overrides the config a table names; an invalid config under test is exit 2 with its errors', async () => {
    const bad = write('badconf/c.yaml', 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {action: DENY}\n');
    const r = await cli('test', '--config', bad, 'examples/quickstart/tests');
    expect(r.code).toBe(2);
    expect(r.err).toContain('the config under test is invalid');
    expect(r.err).toContain('(AuthorizationPolicy/p)');
  });
});
