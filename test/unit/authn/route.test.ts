/**
 * CredentialValidator `match` / `required` routes (src/authn/route.ts): hosts and paths in
 * Istio's string forms, compiled into the same matcher AuthorizationPolicy uses
 * (src/match/strings.ts), hosts normalized on both sides.
 */
import { describe, expect, it } from 'vitest';
import { compileRoute, routeMatches } from '../../../src/match/route.js';
import { DEFAULT_SETTINGS } from '../../../src/config/settings.js';
import { buildRequestContext } from '../../../src/core/context.js';
import { PathSet } from '../../../src/match/strings.js';
import { checkRequest } from './helpers.js';

function matches(route: { hosts?: string[]; paths?: string[] }, host: string, path: string): boolean {
  const ctx = buildRequestContext(checkRequest({ host, path }), { settings: DEFAULT_SETTINGS });
  return routeMatches(compileRoute(route), ctx);
}

describe('route paths: Istio string forms', () => {
  const cases: [pattern: string, path: string, expected: boolean][] = [
    ['/admin', '/admin', true],
    ['/admin', '/admin/x', false],
    ['/api/*', '/api/', true],
    ['/api/*', '/api/v1', true],
    ['/api/*', '/apix', false],
    ['*.json', '/a/b.json', true],
    ['*.json', '/a/b.jsonx', false],
    ['*', '/', true],
    // A leading `*` is read first, as Istio's StringMatcherWithPrefix does: suffix `x*`.
    ['*x*', '/ax*', true],
    ['*x*', '*x/a', false],
  ];
  for (const [pattern, path, expected] of cases) {
    it(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${path}`, () => {
      expect(matches({ paths: [pattern] }, 'example.com', path)).toBe(expected);
    });
  }
  it('means what AuthorizationPolicy `paths` means for the same plain value', () => {
    for (const [pattern, path] of cases) expect(matches({ paths: [pattern] }, 'example.com', path)).toBe(new PathSet([pattern]).test(path));
  });
  it('the query is not part of the path', () => {
    expect(matches({ paths: ['/admin'] }, 'example.com', '/admin?x=1')).toBe(true);
  });
});

describe('route hosts: normalized and case-insensitive on both sides', () => {
  it('values are OR-ed, hosts and paths AND-ed', () => {
    const r = { hosts: ['a.example.com', '*.b.example.com'], paths: ['/mcp*'] };
    expect(matches(r, 'A.example.com:443', '/mcp')).toBe(true);
    expect(matches(r, 'x.B.example.com.', '/mcp/tools')).toBe(true);
    expect(matches(r, 'b.example.com', '/mcp')).toBe(false);
    expect(matches(r, 'a.example.com', '/other')).toBe(false);
  });
  it('a prefix pattern with a port names the bare host', () => {
    expect(matches({ hosts: ['mcp.example.com:*'] }, 'mcp.example.com:8443', '/')).toBe(true);
    expect(matches({ hosts: ['mcp.example.com:*'] }, 'mcp.example.com.evil', '/')).toBe(false);
    expect(matches({ hosts: ['mcp.*'] }, 'MCP.example.com', '/')).toBe(true);
  });
  it('`*` needs a host', () => {
    expect(matches({ hosts: ['*'] }, 'x', '/')).toBe(true);
    expect(matches({ hosts: ['*'] }, '', '/')).toBe(false);
  });
});
