/** The real CLI process: start-up line, SIGTERM drain (exit 0), missing config (exit 2). */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { loadProtos } from '../../src/grpc/proto.js';
import { httpRequest } from '../helpers/server.js';
import { tempDir } from '../helpers/tmp.js';

const MAIN = 'dist/src/main.js';

function quickstartCopy(graceMs: number): string {
  const dir = tempDir('obo-cli-');
  for (const f of ['10-request-authentication.yaml', '20-authorization-policy.yaml']) {
    writeFileSync(join(dir, f), readFileSync(join('examples/quickstart', f)));
  }
  writeFileSync(
    join(dir, '00-settings.yaml'),
    `apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {shutdownGracePeriod: ${graceMs}ms}\n`,
  );
  return dir;
}

/** A server process a failed test left running is stopped. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('obo-authz serve (real process)', () => {
  it('logs the chosen addresses, keeps answering during the grace period after SIGTERM, then exits 0', async () => {
    const dir = quickstartCopy(600);
    const decisionLog = join(dir, 'logs', 'decisions.jsonl');
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', dir, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', '--decision-log', decisionLog], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    /** The first stdout line containing `text`, as soon as the process writes it. */
    const lineWith = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line with ${text} within 10 s: ${out}`)), 10_000);
        const look = () => {
          const line = out.split('\n').find((l) => l.includes(text));
          if (!line) return;
          clearTimeout(timer);
          child.stdout.off('data', look);
          resolve(line);
        };
        child.stdout.on('data', look);
        look();
      });
    const addrs = JSON.parse(await lineWith('"grpcAddress"')) as { grpcAddress: string; httpAddress: string };
    expect(addrs.grpcAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    const { AuthorizationClient, HealthClient } = loadProtos();
    const client = new AuthorizationClient(addrs.grpcAddress, grpc.credentials.createInsecure());
    const health = new HealthClient(addrs.grpcAddress, grpc.credentials.createInsecure());
    const check = () =>
      new Promise<{ status?: { code?: number } }>((res, rej) =>
        (client as unknown as Record<string, Function>)['Check']!(httpRequest({ path: '/healthz' }), (e: Error | null, r: never) => (e ? rej(e) : res(r))),
      );
    const healthStatus = () =>
      new Promise<number>((res, rej) =>
        (health as unknown as Record<string, Function>)['Check']!({ service: '' }, (e: Error | null, r: { status: number }) => (e ? rej(e) : res(r.status))),
      );
    expect(await healthStatus()).toBe(1);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    // logged once draining has started: NOT_SERVING from then on, for the 600 ms grace period
    await lineWith('shutting down: health NOT_SERVING');
    // during the grace period: NOT_SERVING, but Checks are still answered
    expect(await healthStatus()).toBe(2);
    const r = await check();
    expect(r.status?.code ?? 0).toBe(0);
    expect(await exited).toBe(0);
    client.close();
    health.close();
    expect(out).toContain('shutdown complete');
    // the decision log went to its own file, one JSON line per decision
    const lines = readFileSync(decisionLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines[0]).toMatchObject({ msg: 'decision', request_id: 'req-1', decision: 'allow', reason: 'OK', component: 'decision', method: 'GET', path: '/healthz' });
    expect(typeof lines[0].latency_ms).toBe('number');
    expect(out).not.toContain('"msg":"decision"');
  });

  it('exits 2 with a message when serve has no --config and there is no ./config folder', () => {
    const cwd = tempDir('obo-noconf-');
    const r = spawnSync(process.execPath, [join(process.cwd(), MAIN), 'serve'], { cwd, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--config/);
  });

  it('check --config exits 0 for an allowed request and 1 for a denied one, printing proto3 JSON', () => {
    const ok = spawnSync(process.execPath, [MAIN, 'check', '--config', 'examples/quickstart', '--request', 'examples/quickstart/requests/allowed.json'], {
      encoding: 'utf8',
    });
    expect(ok.status).toBe(0);
    const okJson = JSON.parse(ok.stdout);
    expect(okJson.okResponse).toBeDefined();
    expect(okJson.okResponse.headers[0].appendAction).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
    const denied = spawnSync(
      process.execPath,
      [MAIN, 'check', '--config', 'examples/quickstart', '--request', 'examples/quickstart/requests/no-token.json', '--explain'],
      { encoding: 'utf8' },
    );
    expect(denied.status).toBe(1);
    const j = JSON.parse(denied.stdout);
    expect(j.deniedResponse.status.code).toBe('Forbidden');
    expect(j.deniedResponse.body).toBe('RBAC: access denied');
    expect(denied.stderr).toContain('decision: DENY (ERR_RBAC_DENIED, HTTP 403)');
  });

  it('check skips fields Envoy sends that obo-authz does not read, and says so with --explain', () => {
    const dir = tempDir('obo-req-');
    const req = JSON.parse(readFileSync('examples/quickstart/requests/no-token.json', 'utf8'));
    req.attributes.metadataContext = { typedFilterMetadata: { 'envoy.filters.http.x': { '@type': 'type.googleapis.com/x' } } };
    req.attributes.request.http.headers[':path'] = '/healthz';
    req.attributes.request.http.path = '/healthz';
    req.attributes.request.http.method = 'GET';
    writeFileSync(join(dir, 'r.json'), JSON.stringify(req));
    const r = spawnSync(process.execPath, [MAIN, 'check', '--config', 'examples/quickstart', '--request', join(dir, 'r.json'), '--explain'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('skipped: attributes.metadataContext.typedFilterMetadata');
  });

  it('check exits 2 on a usage error and on an unreadable request file', () => {
    expect(spawnSync(process.execPath, [MAIN, 'check', '--config', 'examples/quickstart'], { encoding: 'utf8' }).status).toBe(2);
    const r = spawnSync(process.execPath, [MAIN, 'check', '--config', 'examples/quickstart', '--request', 'nope.json'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('nope.json');
  });
});
