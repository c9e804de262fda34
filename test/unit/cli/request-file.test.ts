/** `check --request FILE` is read strictly: a typo, a list for a map, a wrong type is exit 2 naming the field. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCheckRequest } from '../../../src/cli/check.js';
import { cli } from '../../helpers/cli.js';
import { tempDir } from '../../helpers/tmp.js';

const dir = tempDir('obo-reqfile-');

let n = 0;
function file(content: unknown, ext = '.json'): string {
  const p = join(dir, `r${n++}${ext}`);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

const http = (over: Record<string, unknown>) => ({ attributes: { request: { http: { method: 'POST', path: '/mcp', host: 'mcp.example.com', ...over } } } });

const BAD: [string, unknown, string][] = [
  ['a mistyped field', { attributes: { request: { htp: { path: '/' } } } }, 'attributes.request.htp: unknown field (did you mean "http"?)'],
  ['a mistyped top-level field', { atributes: {} }, 'atributes: unknown field (did you mean "attributes"?)'],
  ['headers as a list', http({ headers: [{ key: 'authorization', value: 'Bearer x' }] }), 'attributes.request.http.headers: expected a map of name to value, got a list (write {"authorization": "Bearer ..."}; a list of {key, value} entries belongs in headerMap.headers)'],
  ['a header value that is a number', http({ headers: { 'x-n': 5 } }), 'attributes.request.http.headers["x-n"]: expected a string, got a number (5: quote it)'],
  ['a path that is not a string', http({ path: ['/a'] }), 'attributes.request.http.path: expected a string, got a list'],
  ['a port that is not a number', { attributes: { source: { address: { socketAddress: { address: '1.2.3.4', portValue: 'eighty' } } } } }, 'attributes.source.address.socketAddress.portValue: expected an integer, got a string "eighty"'],
  ['a negative port', { attributes: { source: { address: { socketAddress: { portValue: -1 } } } } }, 'portValue: must not be negative'],
  ['context extensions as a list', { attributes: { contextExtensions: ['namespace=default'] } }, 'attributes.contextExtensions: expected a map of name to value, got a list'],
  ['labels with a typo in the field', { attributes: { destination: { lables: { app: 'x' } } } }, 'attributes.destination.lables: unknown field (did you mean "labels"?)'],
  ['two address kinds', { attributes: { source: { address: { socketAddress: {}, pipe: {} } } } }, 'only one of socketAddress and pipe may be set'],
  ['an AttributeContext without "attributes"', { request: { http: {} } }, 'this is an AttributeContext: a CheckRequest holds it under "attributes:"'],
  ['not a map', [1, 2], 'expected a CheckRequest (a map with "attributes")'],
  ['a bad timestamp', { attributes: { request: { time: 'yesterday' } } }, 'attributes.request.time: invalid timestamp "yesterday"'],
];

describe('check --request FILE', () => {
  it.each(BAD)('%s: exit 2, naming the field', async (_label, content, message) => {
    const p = file(content);
    const r = await cli('check', '--config', 'examples/quickstart', '--request', p);
    expect(r.code).toBe(2);
    expect(r.err).toContain(p);
    expect(r.err).toContain(message);
    expect(r.out).toBe('');
  });

  it('YAML with a syntax error, JSON that does not parse, a missing file: exit 2 naming the file', async () => {
    const y = file('attributes:\n  request: {http: {path: /x}\n', '.yaml');
    expect((await cli('check', '--config', 'examples/quickstart', '--request', y)).err).toMatch(new RegExp(`${y}: YAML syntax error at line \\d`));
    const j = file('{"attributes": ', '.json');
    expect((await cli('check', '--config', 'examples/quickstart', '--request', j)).err).toContain(`${j}: not valid JSON`);
    const missing = join(dir, 'nope.json');
    const r = await cli('check', '--config', 'examples/quickstart', '--request', missing);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${missing}: cannot read: ENOENT`);
  });

  it('accepts proto3 JSON and snake_case names, YAML, and Envoy fields obo-authz does not read (reported with --explain)', async () => {
    const envoyOnly = {
      attributes: {
        source: { address: { socket_address: { address: '10.0.0.7', port_value: 1, resolver_name: 'r', ipv4_compat: true } } },
        metadataContext: { filterMetadata: { a: { b: 1 } }, typedFilterMetadata: {} },
        request: { time: '2026-01-01T00:00:00Z', http: { method: 'GET', path: '/healthz', host: 'h', headers: { ':path': '/healthz' }, size: '12', headerMap: { headers: [{ key: 'x-a', rawValue: 'YQ==' }] } } },
        context_extensions: { namespace: 'default' },
      },
    };
    const p = file(envoyOnly);
    const r = await cli('check', '--config', 'examples/quickstart', '--request', p, '--explain');
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('note: Envoy fields obo-authz does not read were skipped: attributes.source.address.socket_address.resolver_name, attributes.source.address.socket_address.ipv4_compat, attributes.metadataContext.typedFilterMetadata');
    const req = readCheckRequest(file('attributes:\n  request:\n    http: {method: GET, path: /healthz, headers: {":path": /healthz}}\n', '.yaml'));
    expect(req.attributes?.request?.http?.path).toBe('/healthz');
  });

  it('the shipped sample requests are valid', async () => {
    for (const f of ['allowed.json', 'no-token.json', 'expired-token.json']) {
      const r = await cli('check', '--config', 'examples/quickstart', '--request', `examples/quickstart/requests/${f}`);
      expect(r.code, `${f}: ${r.err}`).toBe(f === 'allowed.json' ? 0 : 1);
    }
  });
});
