/**
 * Finding 9 (issue 17): log lines could be corrupted on a stdout pipe (the container
 * default). Decision lines were batched by one writer and the main log written by another on
 * the same descriptor; when the reader falls behind, the kernel takes a batch in parts and a
 * line of the other writer landed inside it. Now one ordered writer serves each descriptor.
 *
 * The real runtime of `obo-authz serve` (createRuntime, from the built dist/) writes
 * decision lines and main-log lines as fast as it can into a pipe that this test drains
 * slowly; every line that arrives must be whole, valid JSON.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const DIST = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist', 'src');

const CHILD = `
const { createRuntime } = await import(${JSON.stringify(join(DIST, 'cli', 'serve.js'))});
const { decisionLine } = await import(${JSON.stringify(join(DIST, 'observability', 'decision-log.js'))});
const rt = createRuntime('info');
const pad = 'p'.repeat(3000);
const decision = (i) => ({ allow: i % 2 === 0, reason: i % 2 === 0 ? 'OK' : 'ERR_RBAC_DENIED', httpStatus: 403, body: '', denyHeaders: [],
  attribution: { policy: 'ns/policy-' + (i % 7) }, identity: null, actor: null, message: 'detail ' + 'd'.repeat(i % 500), trace: null, requestId: 'req-' + i });
for (let i = 0; i < 12000; i++) {
  rt.decisionSink.write(decisionLine(decision(i), 0.5));
  if (i % 4 === 0) rt.logger.info({ i, pad }, 'main log line');
  if (i % 500 === 0) await new Promise((r) => setImmediate(r));
}
await new Promise((r) => setTimeout(r, 300));
await rt.decisionSink.flush?.();
await new Promise((r) => rt.logger.flush(() => r()));
await new Promise((r) => setTimeout(r, 300));
process.exit(0);
`;

describe('finding 9: every stdout line is whole JSON under a slow pipe reader', () => {
  it('decision lines and main-log lines never interleave inside a line', async () => {
    const dir = tempDir('obo-authz-f9-');
    const script = join(dir, 'child.mjs');
    writeFileSync(script, CHILD);
    // A real pipe (as a container runtime gives): the process's stdout is the write end of
    // \`| cat\`, and cat's output is the pipe this test reads slowly.
    const child = spawn('sh', ['-c', `"${process.execPath}" "${script}" | cat`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    // The slow reader: take one chunk, then leave the pipe full for a while.
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      child.stdout.pause();
      setTimeout(() => child.stdout.resume(), 3);
    });
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(code).toBe(0);
    const lines = buf.split('\n');
    expect(lines.pop()).toBe(''); // ends with a newline
    const broken = lines.filter((l) => {
      try {
        JSON.parse(l);
        return false;
      } catch {
        return true;
      }
    });
    expect(lines.length).toBeGreaterThan(5000);
    expect(lines.some((l) => l.includes('"msg":"main log line"'))).toBe(true);
    expect(lines.some((l) => l.includes('"msg":"decision"'))).toBe(true);
    expect(broken.map((l) => l.slice(0, 120))).toEqual([]);
  }, 60_000);
});
