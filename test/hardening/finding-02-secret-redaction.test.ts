/**
 * Finding 2 (issue 17): a remote STS's error text could carry a client secret into the logs.
 * An `error_description` holding `client_secret: <the configured secret>` reached the warning
 * line and the decision line's `detail` verbatim. Now every configured secret is redacted in
 * any text that came from outside, in every form (name=value, name: value, JSON, quoted,
 * bare, percent-encoded, base64), and generic credential patterns are redacted too.
 */
import { writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { rememberSecret } from '../helpers/secrets.js';
import { tempDir } from '../helpers/tmp.js';
import { json, makeIdp, sq, startLoopback, type Idp, type Loopback } from '../unit/exchange/helpers.js';
import { exchangeFor, requestAuthentication, yamlDocs } from './configs.js';

const SECRET = 'Zq9/cl1ent+p@ss=8842"x';
const SHARED_TOKEN = 'st-7f3c9a1e5b2d4c6f8a0e';
const enc = encodeURIComponent(SECRET);
const FORMS: Record<string, string> = {
  'name: value': `client_secret: ${SECRET}`,
  'name=value (form)': `client_secret=${enc}&x=1`,
  JSON: JSON.stringify({ client_secret: SECRET }),
  quoted: `the client_secret='${SECRET}' is wrong`,
  bare: `bad credentials ${SECRET} for obo`,
  'bare, percent-encoded': `bad credentials ${enc}`,
  'bare, base64': `bad credentials ${Buffer.from(SECRET).toString('base64')}`,
  'another configured secret': `token ${SHARED_TOKEN} rejected`,
};
const LEAKS = [SECRET, enc, encodeURIComponent(SECRET).replace(/%20/g, '+'), Buffer.from(SECRET).toString('base64').replace(/=+$/, ''), JSON.stringify(SECRET).slice(1, -1), SHARED_TOKEN];

describe('finding 2: configured secrets never reach a log line, whatever form the remote text uses', () => {
  let idp: Idp;
  let sts: Loopback;
  let s: TestServer;
  let description = '';
  const dir = tempDir('obo-authz-f2-');
  beforeAll(async () => {
    for (const l of LEAKS) rememberSecret(l);
    writeFileSync(join(dir, 'shared-token'), `${SHARED_TOKEN}\n`);
    idp = await makeIdp('https://idp.f2.test');
    sts = await startLoopback((_r, res: ServerResponse) => json(res, 400, { error: 'invalid_grant', error_description: description }));
    s = await startTestServer({
      'c.yaml': yamlDocs(
        requestAuthentication(idp),
        `apiVersion: obo-authz.dev/v1alpha1
kind: SecurityTokenService
metadata: {name: remote, namespace: istio-system}
spec:
  remote:
    tokenEndpoint: ${sts.url}/token
    clientAuthentication: {method: client_secret_post, clientId: obo, clientSecret: ${sq(SECRET)}}
`,
        exchangeFor('b1', 'backend-1', 'remote'),
        `apiVersion: obo-authz.dev/v1alpha1
kind: CredentialValidator
metadata: {name: shared, namespace: istio-system}
spec:
  type: SharedToken
  match: {paths: ["/never/*"]}
  sharedToken: {file: ${join(dir, 'shared-token')}, fromHeaders: [{name: x-shared}]}
`,
      ),
    });
  });
  afterAll(async () => {
    await s.close();
    await sts.close();
  });

  for (const [form, text] of Object.entries(FORMS)) {
    it(form, async () => {
      description = text;
      const token = await idp.sign({ sub: `alice-${form.length}` });
      rememberSecret(token);
      const before = s.runtime.logs.length;
      const r = await s.check(httpRequest({ path: '/x', id: `f2-${form}`, headers: { authorization: `Bearer ${token}` }, contextExtensions: { backend: 'b1' } }));
      expect(r.denied_response?.status.code).toBe(403);
      await new Promise((res) => setImmediate(res));
      const lines = s.runtime.logs.slice(before);
      expect(lines.some((l) => l.includes('"msg":"decision"'))).toBe(true);
      expect(lines.some((l) => l.includes('token exchange failed'))).toBe(true);
      for (const l of lines) for (const leak of LEAKS) expect(l.includes(leak), `${form}: ${l.slice(0, 300)}`).toBe(false);
    });
  }
});
