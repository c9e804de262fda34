/**
 * Finding 1 (issue 17): fail-open while a config file was rewritten in place. An empty file
 * was a valid config, so truncating the only config file and writing it back a second later
 * allowed requests the config denies; writing the leading documents first and the
 * AuthorizationPolicies later did too. Now a file with no documents is an error, and the
 * watcher loads files only once they have settled (unchanged across the settle interval), so
 * no write in progress ever makes the service more permissive.
 *
 * Every way of rewriting the config below runs while Checks are sent without pause; the
 * config denies both probes (`/admin/x` with a token, `/api/x` without one) in every version,
 * and no probe may ever be allowed. Each scenario ends with a change that must take effect,
 * so reloads are shown to still happen.
 */
import { appendFileSync, closeSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startTestServer, type TestServer } from '../helpers/server.js';
import { rememberSecret } from '../helpers/secrets.js';
import { waitUntil } from '../helpers/wait.js';
import { makeIdp, type Idp } from '../unit/exchange/helpers.js';
import { allowPaths, DENY_ADMIN, requestAuthentication, yamlDocs } from './configs.js';
import { startServer } from '../../src/cli/serve.js';

const SETTLE_MS = 700;
/** How long a writer below pauses between its writes (the unsafe part; not a wait on our code). */
const PAUSE_MS = 200;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

let idp: Idp;
let token = '';

const authn = () => requestAuthentication(idp);
/** ALLOW /api/* for authenticated requests; `extra` adds a path (the visible difference between versions). */
const allowApi = (extra: string) => allowPaths(['/api/*', ...(extra ? [extra] : [])], true);
/** The whole config. */
const full = (extra = '') => yamlDocs(authn(), DENY_ADMIN, allowApi(extra));

describe('finding 1: rewriting config files in place never makes the service more permissive', () => {
  let s: TestServer;
  let stop = false;
  let probes = 0;
  const allowed: string[] = [];
  let prober: Promise<void>;

  beforeAll(async () => {
    idp = await makeIdp('https://idp.f1.test');
    token = await idp.sign({ sub: 'alice' });
    rememberSecret(token);
    s = await startTestServer({ 'config.yaml': full() });
    // startTestServer does not watch: a second server on the same folder does, with a short settle.
    await s.server.close();
    const server = await startServer({
      configPaths: [s.dir],
      grpcAddress: s.server.grpcAddress,
      httpAddress: '127.0.0.1:0',
      runtime: s.runtime,
      watch: true,
      watchDebounceMs: 30,
      watchPollMs: 100,
      watchSettleMs: SETTLE_MS,
    });
    (s as { server: typeof server }).server = server;
    const probe = async (path: string, withToken: boolean) => {
      const r = await s.check(httpRequest({ path, headers: withToken ? { authorization: `Bearer ${token}` } : {} }), 5000);
      probes++;
      if (r.status.code === 0) allowed.push(path);
    };
    prober = (async () => {
      while (!stop) {
        await Promise.all([probe('/admin/x', true), probe('/api/x', false)]);
      }
    })();
  });
  afterAll(async () => {
    stop = true;
    await prober;
    await s.close();
  });

  const file = () => join(s.dir, 'config.yaml');
  const newPathAllowed = async (p: string) =>
    (await s.check(httpRequest({ path: p, headers: { authorization: `Bearer ${token}` } }))).status.code === 0;
  /** Wait until `/new-N/x` is allowed: the final version was loaded. */
  const waitFor = (p: string) => waitUntil(() => newPathAllowed(p), { what: `${p} allowed after the write finished`, timeoutMs: 10_000, intervalMs: 50 });
  let n = 0;
  const next = () => {
    n++;
    return { extra: `/new-${n}/*`, path: `/new-${n}/x` };
  };

  const scenarios: [string, (v: { extra: string }) => Promise<void>][] = [
    ['truncate, then write back later', async (v) => {
      writeFileSync(file(), '');
      await pause(PAUSE_MS);
      writeFileSync(file(), full(v.extra));
    }],
    ['leading documents first, the AuthorizationPolicies later', async (v) => {
      writeFileSync(file(), `${authn()}---\n`);
      await pause(PAUSE_MS);
      appendFileSync(file(), `${DENY_ADMIN}---\n`);
      await pause(PAUSE_MS);
      appendFileSync(file(), allowApi(v.extra));
    }],
    ['the ALLOW policy first, the DENY policy later', async (v) => {
      writeFileSync(file(), `${authn()}---\n${allowApi(v.extra)}`);
      await pause(PAUSE_MS);
      appendFileSync(file(), `---\n${DENY_ADMIN}`);
    }],
    ['small chunks through one descriptor', async (v) => {
      const text = full(v.extra);
      const fd = openSync(file(), 'w');
      try {
        for (let i = 0; i < text.length; i += 97) {
          writeSync(fd, text.slice(i, i + 97));
          await pause(25);
        }
      } finally {
        closeSync(fd);
      }
    }],
    ['delete, then create again', async (v) => {
      rmSync(file());
      await pause(PAUSE_MS);
      writeFileSync(file(), full(v.extra));
    }],
    ['a second file of the folder written before the first is cut down', async (v) => {
      // the DENY moves to its own file: for a moment both files hold it (fine), then the
      // first file is rewritten without it
      writeFileSync(join(s.dir, 'deny.yaml'), DENY_ADMIN);
      await pause(PAUSE_MS);
      writeFileSync(file(), `${authn()}---\n${allowApi(v.extra)}`);
      await pause(PAUSE_MS);
      // and back to one file: the removal of deny.yaml comes last
      writeFileSync(file(), full(v.extra));
      await pause(PAUSE_MS);
      rmSync(join(s.dir, 'deny.yaml'));
    }],
    ['a broken intermediate state', async (v) => {
      writeFileSync(file(), `${authn()}---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin`);
      await pause(PAUSE_MS);
      writeFileSync(file(), full(v.extra));
    }],
    ['the safe way: atomic rename', async (v) => {
      writeFileSync(join(s.dir, '.config.yaml.tmp'), full(v.extra));
      renameSync(join(s.dir, '.config.yaml.tmp'), file());
    }],
  ];

  for (const [name, write] of scenarios) {
    it(name, async () => {
      const v = next();
      const before = probes;
      await write(v);
      await waitFor(v.path);
      expect(probes).toBeGreaterThan(before);
      expect(allowed).toEqual([]);
    }, 30_000);
  }

  it('an empty file is an error, and the last good config stays', async () => {
    writeFileSync(file(), '# nothing here yet\n');
    const ok = await s.server.reload();
    expect(ok).toBe(false);
    const line = s.runtime.logs.find((l) => l.includes('the file holds no YAML document'));
    expect(line).toBeDefined();
    expect(allowed).toEqual([]);
    writeFileSync(file(), full());
    expect(await s.server.reload()).toBe(true);
  });
});
