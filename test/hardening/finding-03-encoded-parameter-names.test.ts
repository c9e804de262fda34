/**
 * Finding 3 (issue 17): encoded query-parameter names. `?access%5Ftoken=<JWT>` (also
 * `%61ccess_token`) was extracted and exchanged, but `query_parameters_to_remove` named
 * `access_token`; Envoy removes by the name as sent, so the user's token reached the backend
 * beside the exchanged one. Now removals name what the client sent, for query parameters and
 * for cookies (also a cookie in a second Cookie header, which Envoy joins with `,`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, setHeaders, startTestServer, type TestServer } from '../helpers/server.js';
import { rememberSecret } from '../helpers/secrets.js';
import { makeIdp, type Idp } from '../unit/exchange/helpers.js';
import { allowPaths, builtinSts, exchangeFor, requestAuthentication, yamlDocs } from './configs.js';

let idp: Idp;
let s: TestServer;
let token = '';

beforeAll(async () => {
  idp = await makeIdp('https://idp.f3.test');
  token = await idp.sign({ sub: 'alice' });
  rememberSecret(token);
  s = await startTestServer({
    'c.yaml': yamlDocs(
      requestAuthentication(idp, '', 'fromCookies: [session]'),
      allowPaths(['/*'], true, 'users'),
      builtinSts('https://sts.f3.test'),
      exchangeFor('exchanged', 'backend-x'),
    ),
  });
});
afterAll(async () => s.close());

const SPELLINGS = ['access_token', 'access%5Ftoken', 'access%5ftoken', '%61ccess_token', '%61ccess%5Ftoken'];

describe('finding 3: token removal names the query parameter and cookie as the client sent them', () => {
  for (const name of SPELLINGS) {
    for (const backend of ['', 'exchanged']) {
      it(`?${name}=<token>${backend ? ' (exchanged)' : ''}: allowed, and ${name} is removed`, async () => {
        const r = await s.check(httpRequest({ path: `/api/x?q=1&${name}=${token}`, contextExtensions: backend ? { backend } : {} }));
        expect(r.status.code).toBe(0);
        expect(r.ok_response?.query_parameters_to_remove).toContain(name);
        if (backend) expect(setHeaders(r)['authorization']).toMatch(/^Bearer /);
      });
    }
  }

  it('two spellings of one name in one request: both removed', async () => {
    const r = await s.check(httpRequest({ path: `/api/x?access_token=${token}&access%5Ftoken=${token}`, contextExtensions: { backend: 'exchanged' } }));
    expect(r.status.code).toBe(0);
    expect(r.ok_response?.query_parameters_to_remove).toEqual(expect.arrayContaining(['access_token', 'access%5Ftoken']));
  });

  for (const backend of ['', 'exchanged']) {
    it(`a token cookie in a second Cookie header (joined with ","): removed${backend ? ' (exchanged)' : ''}`, async () => {
      const r = await s.check(httpRequest({ path: '/api/x', headers: { cookie: `theme=dark,session=${token}; lang=en` }, contextExtensions: backend ? { backend } : {} }));
      expect(r.status.code).toBe(0);
      const cookie = setHeaders(r)['cookie'];
      expect(cookie ?? '').not.toContain(token);
      expect(cookie).toBe('theme=dark; lang=en');
    });
  }
});
