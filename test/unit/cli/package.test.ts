/** `npm pack` ships what the installed `obo-authz` needs: the built JavaScript, the protos, an executable bin. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('the npm package', () => {
  it('holds dist/src/*.js (not sources, tests or maps), every proto, and a bin with a node shebang', () => {
    // --ignore-scripts: `prepare` would rebuild dist/ under the other tests' feet
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string>; engines: { node: string } };
    expect(files).toContain(pkg.bin['obo-authz']);
    expect(files).toContain('dist/src/cli/cli.js');
    expect(files).toContain('package.json');
    for (const p of ['envoy/service/auth/v3/external_auth.proto', 'envoy/service/auth/v3/attribute_context.proto', 'envoy/config/core/v3/base.proto', 'grpc/health/v1/health.proto']) expect(files).toContain(`proto/${p}`);
    expect(files.filter((f) => !/^(dist\/src\/.*\.js|proto\/.*\.proto|package\.json|README\.md)$/.test(f))).toEqual([]);
    expect(readFileSync(pkg.bin['obo-authz']!, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(pkg.engines.node).toBe('>=20');
  });
});
