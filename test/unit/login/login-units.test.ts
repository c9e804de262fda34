/** Units of the browser login: sealing and key rotation, cookie chunking, return URLs, id token claims, config errors. */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CompactEncrypt, compactDecrypt } from 'jose';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../../helpers/tmp.js';
import { chunkName, MAX_SET_COOKIE_BYTES, readChunked, writeChunked, type CookieOptions } from '../../../src/session/cookie.js';
import { parseKey, SessionKeys } from '../../../src/session/keys.js';
import { idTokenClaimsProblem, safeReturnPath } from '../../../src/login/flow.js';
import type { CompiledLogin } from '../../../src/login/compile.js';
import { compileYaml } from '../../helpers/config.js';
import { formatIssue } from '../../../src/config/issues.js';
import { createTestRuntime } from '../../helpers/runtime.js';

const dir = tempDir('obo-login-unit-');

describe('session sealing (JWE dir + A256GCM) and key rotation', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  it('seals to standard compact JWE that jose opens, and opens what jose sealed', async () => {
    const keys = new SessionKeys([k1]);
    const sealed = keys.seal('{"a":1}');
    const { plaintext, protectedHeader } = await compactDecrypt(sealed, k1);
    expect(new TextDecoder().decode(plaintext)).toBe('{"a":1}');
    expect(protectedHeader).toMatchObject({ alg: 'dir', enc: 'A256GCM', kid: keys.keys[0]!.kid });
    const byJose = await new CompactEncrypt(new TextEncoder().encode('hello')).setProtectedHeader({ alg: 'dir', enc: 'A256GCM' }).encrypt(k1);
    expect(keys.open(byJose)).toBe('hello');
  });
  it('opens with any key of the list and seals with the first (rotation); a dropped key no longer opens', () => {
    const old = new SessionKeys([k1]).seal('session');
    expect(new SessionKeys([k2, k1]).open(old)).toBe('session');
    expect(new SessionKeys([k2]).open(old)).toBeNull();
    const fresh = new SessionKeys([k2, k1]).seal('x');
    expect(new SessionKeys([k1]).open(fresh)).toBeNull();
  });
  it('refuses any altered byte (authenticated encryption)', () => {
    const keys = new SessionKeys([k1]);
    const s = keys.seal('{"sub":"alice"}');
    for (const i of [2, s.indexOf('..') + 3, s.lastIndexOf('.') - 2, s.length - 2]) {
      const c = s[i] === 'A' ? 'B' : 'A';
      expect(keys.open(s.slice(0, i) + c + s.slice(i + 1))).toBeNull();
    }
    expect(keys.open('not.a.jwe')).toBeNull();
  });
  it('reads keys as base64, base64url or hex, and rejects other lengths', () => {
    expect(parseKey(k1.toString('base64'))).toEqual(k1);
    expect(parseKey(k1.toString('base64url'))).toEqual(k1);
    expect(parseKey(k1.toString('hex'))).toEqual(k1);
    expect(parseKey(randomBytes(16).toString('base64'))).toMatch(/32 bytes/);
  });
});

describe('cookie chunking', () => {
  const o: CookieOptions = { name: 'obo_session', path: '/', secure: true, sameSite: 'Lax', maxAgeS: 3600 };
  it('writes one cookie when it fits and chunks a large value, each line under the limit, deleting stale forms', () => {
    const none = () => undefined;
    expect(writeChunked('small', o, none)).toHaveLength(1);
    const big = 'x'.repeat(9000);
    const lines = writeChunked(big, o, (n) => (n === 'obo_session' ? 'old' : undefined))!;
    const sets = lines.filter((l) => !l.includes('Max-Age=0'));
    expect(sets.length).toBe(3);
    for (const l of sets) expect(l.length).toBeLessThanOrEqual(MAX_SET_COOKIE_BYTES);
    expect(lines.some((l) => l.startsWith('obo_session=;') && l.includes('Max-Age=0'))).toBe(true);
    const jar = new Map(sets.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1, l.indexOf(';'))]));
    expect(readChunked('obo_session', (n) => jar.get(n))).toBe(big);
    // Shrinking back to one cookie deletes the chunks the browser still has.
    const back = writeChunked('small', o, (n) => (n === chunkName('obo_session', 2) ? 'c' : undefined))!;
    expect(back.some((l) => l.startsWith('obo_session_2=;'))).toBe(true);
    expect(writeChunked('y'.repeat(40_000), o, none)).toBeNull();
  });
});

describe('return URLs stay on the app origin (no open redirect)', () => {
  const l = { appOrigin: 'https://app.test' } as CompiledLogin;
  it.each([
    ['/private?x=1', '/private?x=1'],
    ['//evil.example/x', '/'],
    ['/\\evil.example', '/'],
    ['https://evil.example/', '/'],
    ['/a/../b', '/b'],
    ['/%2F%2Fevil', '/%2F%2Fevil'],
    ['/x\r\nset-cookie: a=b', '/'],
  ])('%s -> %s', (input, out) => {
    expect(safeReturnPath(l, input)).toBe(out);
  });
});

describe('id token claims (OIDC Core 3.1.3.7)', () => {
  const base = { sub: 'alice', exp: 2e9, aud: 'web' };
  it.each([
    [base, null],
    [{ ...base, aud: ['web', 'other'], azp: 'web' }, null],
    [{ ...base, aud: ['web', 'other'] }, 'no azp'],
    [{ ...base, azp: 'other' }, 'azp is not'],
    [{ ...base, aud: 'other' }, 'audience'],
    [{ ...base, exp: undefined }, 'no exp'],
    [{ ...base, sub: '' }, 'no sub'],
  ])('%j', (claims, problem) => {
    const p = idTokenClaimsProblem(claims as Record<string, unknown>, 'web');
    if (problem === null) expect(p).toBeNull();
    else expect(p).toContain(problem);
  });
});

describe('OIDCLogin config errors name file, document and field', () => {
  writeFileSync(join(dir, 'k'), randomBytes(32).toString('base64'));
  writeFileSync(join(dir, 's'), 'secret\n');
  const login = (name: string, extra = '') => `apiVersion: obo-authz.dev/v1alpha1
kind: OIDCLogin
metadata: {name: ${name}, namespace: istio-system}
spec:
  issuer: https://idp.example.com
  clientId: ${name}
  clientSecretFile: ${join(dir, 's')}
  appUrl: https://app.example.com
  session: {keyFiles: [${join(dir, 'k')}]${extra}}
`;
  const errors = (yaml: string) => {
    const r = compileYaml(yaml, createTestRuntime(), join(dir, 'logins.yaml'));
    return r.issues.filter((i) => i.severity === 'error').map(formatIssue);
  };
  it('two logins with the same cookie name on the same host', () => {
    const e = errors(`${login('a', ', cookie: {name: s1}')}---\n${login('b', ', cookie: {name: s1}').replace('/oauth2', '/x')}`);
    expect(e.join('\n')).toMatch(/logins\.yaml:\d+:\d+: document 2 \(OIDCLogin\/b\): spec\.session\.cookie\.name: cookie name "s1" is also used .*OIDCLogin istio-system\/a \(.*logins\.yaml document 1\)/);
  });
  it('distinct cookie names on one host still clash on the callback path; other hosts do not clash', () => {
    expect(errors(`${login('a', ', cookie: {name: s1}')}---\n${login('b', ', cookie: {name: s2}')}`).join('\n')).toMatch(/spec\.callbackPath: callback path \/oauth2\/callback/);
    expect(errors(`${login('a')}---\n${login('b').replace('app.example.com', 'other.example.com')}`)).toEqual([]);
  });
  it('Secure by default; insecureDevMode only on loopback; __Host- rules; unreadable key and secret files', () => {
    expect(errors(login('a').replace('https://app.example.com', 'http://app.example.com')).join('\n')).toMatch(/spec\.appUrl: an http appUrl needs session\.cookie\.insecureDevMode/);
    expect(errors(login('a', ', cookie: {insecureDevMode: true}')).join('\n')).toMatch(/insecureDevMode .* only for a loopback/);
    expect(errors(login('a', ', cookie: {hostPrefix: true, path: /app}')).join('\n')).toMatch(/spec\.session\.cookie\.path: a __Host- cookie must have Path=\//);
    expect(errors(login('a').replace(join(dir, 'k'), join(dir, 'missing'))).join('\n')).toMatch(/spec\.session\.keyFiles\[0\]: cannot read key file: ENOENT/);
    expect(errors(login('a').replace(join(dir, 's'), join(dir, 'nope'))).join('\n')).toMatch(/spec\.clientSecretFile: cannot read/);
    expect(errors(login('a', ', store: redis')).join('\n')).toMatch(/spec\.session\.redis: required for store: redis/);
  });
  it('registers the session keys and the client secret with the log redactor', () => {
    const rt = createTestRuntime();
    const key = randomBytes(32).toString('base64');
    writeFileSync(join(dir, 'k2'), `${key}\n`);
    writeFileSync(join(dir, 's2'), 'client-secret-value\n');
    const r = compileYaml(login('a').replace(join(dir, 'k'), join(dir, 'k2')).replace(join(dir, 's'), join(dir, 's2')), rt, join(dir, 'logins.yaml'));
    expect(r.issues.filter((i) => i.severity === 'error')).toEqual([]);
    expect(rt.secrets!.scrub(`a=${key} b=client-secret-value`)).toBe('a=[REDACTED] b=[REDACTED]');
  });
});
