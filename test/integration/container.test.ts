/**
 * The documented `docker run` and compose commands, exercised with the CLI (there is no Docker
 * engine here): every `docker run ... obo-authz` line in the docs and the compose service are
 * read, their mounts copied into a fresh folder that stands for the container's file system
 * (only what is mounted, so a config that reaches outside its mount fails as it would in the
 * container), the image's ENTRYPOINT/CMD/ENV from the Dockerfile applied, and the command run.
 * `serve` must become ready and the image's HEALTHCHECK command must pass — with TLS on too.
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { MAIN } from '../helpers/cli.js';
import { imageRun } from '../helpers/dockerfile.js';
import { makeTestPki } from '../helpers/certs.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = process.cwd();
const IMAGE = imageRun(readFileSync('Dockerfile', 'utf8'));
const IMAGE_MAIN = IMAGE.entrypoint[1]!; // node <this>
const scratch = tempDir('obo-container-');

interface ContainerRun {
  readonly where: string;
  readonly mounts: { host: string; container: string }[];
  readonly env: Record<string, string>;
  readonly args: string[];
}

/** Shell words of one command line: quotes and $PWD (the repository root) as sh reads them. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) out.push((m[1] ?? m[2] ?? m[3]!).replace(/\$\{?PWD\}?/g, ROOT));
  return out;
}

const VALUE_OPTS = new Set(['-v', '--volume', '-p', '--publish', '-e', '--env', '--name', '--network', '-w', '--workdir', '-u', '--user']);

function parseDockerRun(line: string, where: string): ContainerRun {
  const w = words(line);
  const i0 = w.indexOf('run') + 1;
  const mounts: ContainerRun['mounts'] = [];
  const env: Record<string, string> = {};
  let i = i0;
  for (; i < w.length && w[i]!.startsWith('-'); i++) {
    const o = w[i]!;
    if (!VALUE_OPTS.has(o)) continue;
    const v = w[++i]!;
    if (o === '-v' || o === '--volume') {
      const [host, container] = v.split(':');
      mounts.push({ host: resolve(ROOT, host!), container: container! });
    } else if (o === '-e' || o === '--env') env[v.split('=')[0]!] = v.slice(v.indexOf('=') + 1);
  }
  expect(w[i], `${where}: image`).toMatch(/obo-authz/);
  return { where, mounts, env, args: w.slice(i + 1) };
}

/** Every `docker run ... obo-authz...` in the docs, the README and the Dockerfile's comments. */
function documentedRuns(): ContainerRun[] {
  const files = ['README.md', 'Dockerfile', 'deploy/README.md', 'envoy/README.md', ...readdirSync('docs', { recursive: true }).map(String).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  const runs: ContainerRun[] = [];
  for (const f of files) {
    const lines = readFileSync(f, 'utf8').replace(/\\\n\s*/g, ' ').split('\n');
    lines.forEach((l, n) => {
      const at = l.indexOf('docker run ');
      if (at >= 0 && /obo-authz:\S+/.test(l)) runs.push(parseDockerRun(l.slice(at).replace(/\s+#.*$/, ''), `${f}:${n + 1}`));
    });
  }
  return runs;
}

/** The container's file system: each mount copied (only the mount), paths in args mapped. */
function containerFs(run: ContainerRun): { root: string; map: (p: string) => string } {
  const root = mkdtempSync(join(scratch, 'fs-'));
  for (const m of run.mounts) {
    const dst = join(root, m.container);
    mkdirSync(dirname(dst), { recursive: true });
    cpSync(m.host, dst, { recursive: statSync(m.host).isDirectory(), dereference: true });
  }
  const map = (p: string) => (run.mounts.some((m) => p === m.container || p.startsWith(`${m.container}/`)) ? join(root, p) : p);
  return { root, map };
}

/** The image's command line for `args` (CMD when none), with the image's main mapped to the build. */
function imageArgs(args: readonly string[]): string[] {
  return (args.length ? args : IMAGE.cmd).map((a) => (a === IMAGE_MAIN ? MAIN : a));
}

/** Run `serve` as the container would, wait until it listens, run the HEALTHCHECK, stop it. */
async function serveAndProbe(run: ContainerRun, healthcheck: string[], extraEnv: Record<string, string> = {}): Promise<{ health: number; out: string }> {
  const { map } = containerFs(run);
  const args = imageArgs(run.args).map(map);
  expect(args[0], run.where).toBe('serve');
  // Port 0 instead of the fixed container ports (tests run in parallel); the health listener
  // address comes from the image ENV as in the container, on a free port.
  const env = { ...process.env, ...IMAGE.env, ...run.env, ...extraEnv, OBO_AUTHZ_HEALTH_ADDRESS: '127.0.0.1:0' };
  const child = spawn(process.execPath, [MAIN, ...args, '--grpc-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const exited = new Promise((r) => child.on('exit', r));
  try {
    const started = await new Promise<Record<string, unknown>>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${run.where}: no start-up line:\n${out}`)), 15_000);
      const look = () => {
        const line = out.split('\n').find((l) => l.includes('"obo-authz listening"'));
        if (line) {
          clearTimeout(t);
          res(JSON.parse(line) as Record<string, unknown>);
        }
      };
      child.stdout.on('data', look);
      child.on('exit', () => rej(new Error(`${run.where}: exited:\n${out}`)));
    });
    expect(started['serving'], `${run.where}: serving at start-up\n${out}`).toBe(true);
    const probe = healthcheck.map((a) => (a === IMAGE_MAIN ? MAIN : a));
    expect(probe[0]).toBe('node');
    const h = spawnSync(process.execPath, probe.slice(1), { env: { ...process.env, ...IMAGE.env, ...run.env, OBO_AUTHZ_HEALTH_ADDRESS: String(started['healthAddress']) }, encoding: 'utf8' });
    return { health: h.status ?? -1, out: out + h.stdout + h.stderr };
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

describe('the documented docker run commands', () => {
  const runs = documentedRuns();

  it('are documented (the README quick start and the CLI use of the image at least)', () => {
    expect(runs.length).toBeGreaterThanOrEqual(3);
    expect(runs.some((r) => imageArgs(r.args)[0] === 'serve')).toBe(true);
    expect(runs.some((r) => r.args[0] === 'validate')).toBe(true);
  });

  it.each(runs.map((r) => [r.where, r] as const))('%s works', async (_where, run) => {
    if (imageArgs(run.args)[0] === 'serve') {
      const r = await serveAndProbe(run, IMAGE.healthcheck);
      expect(r.health, r.out).toBe(0);
    } else {
      const { map } = containerFs(run);
      const r = spawnSync(process.execPath, [MAIN, ...imageArgs(run.args).map(map)], { env: { ...process.env, ...IMAGE.env, ...run.env }, encoding: 'utf8', cwd: scratch });
      expect(r.status, `${run.where}\n${r.stdout}${r.stderr}`).toBe(0);
    }
  });

  it('the image health check passes with TLS (and client certificates) on both listeners', async () => {
    const pki = makeTestPki();
    {
      const base = runs.find((r) => imageArgs(r.args)[0] === 'serve')!;
      const run: ContainerRun = {
        ...base,
        mounts: [...base.mounts, { host: pki.dir, container: '/etc/obo-authz-tls' }],
        args: [...imageArgs(base.args), '--tls-cert', '/etc/obo-authz-tls/server.crt', '--tls-key', '/etc/obo-authz-tls/server.key', '--tls-client-ca', '/etc/obo-authz-tls/ca.crt'],
      };
      const r = await serveAndProbe(run, IMAGE.healthcheck);
      expect(r.health, r.out).toBe(0);
      pki.remove();
    }
  });

  it('a mounted config that reaches outside its mount does not start (the old quick start referenced ../demo-keys/)', async () => {
    const outside = mkdtempSync(join(scratch, 'outside-'));
    cpSync('examples/quickstart', join(outside, 'quickstart'), { recursive: true });
    const f = join(outside, 'quickstart', '30-token-exchange.yaml');
    writeFileSync(f, readFileSync(f, 'utf8').replace('file: keys/demo-sts.private.jwk.json', 'file: ../demo-keys/demo-sts.private.jwk.json'));
    cpSync('examples/quickstart/keys', join(outside, 'demo-keys'), { recursive: true });
    const run: ContainerRun = { where: 'outside', mounts: [{ host: join(outside, 'quickstart'), container: '/etc/obo-authz' }], env: {}, args: ['validate', '/etc/obo-authz'] };
    const { map } = containerFs(run);
    const r = spawnSync(process.execPath, [MAIN, ...imageArgs(run.args).map(map)], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('spec.builtin.keys[0].file: cannot read file "../demo-keys/demo-sts.private.jwk.json"');
  });
});

describe('envoy/docker-compose.yaml', () => {
  it('the obo-authz service serves its mounted config and its healthcheck passes', async () => {
    const compose = parseYaml(readFileSync('envoy/docker-compose.yaml', 'utf8')) as { services: Record<string, { command: string[]; volumes: string[]; healthcheck: { test: string[] }; environment?: Record<string, string> }> };
    const s = compose.services['obo-authz']!;
    const run: ContainerRun = {
      where: 'envoy/docker-compose.yaml',
      mounts: s.volumes.map((v) => ({ host: resolve('envoy', v.split(':')[0]!), container: v.split(':')[1]! })),
      env: s.environment ?? {},
      args: s.command,
    };
    const test = s.healthcheck.test[0] === 'CMD' ? s.healthcheck.test.slice(1) : s.healthcheck.test;
    const r = await serveAndProbe(run, test);
    expect(r.health, r.out).toBe(0);
  });
});
