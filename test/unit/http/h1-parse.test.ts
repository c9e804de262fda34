/**
 * The strict HTTP/1.1 subset the fast path reads itself (everything else goes to node:http,
 * compared byte for byte in test/integration/http-fastpath-diff.test.ts), and the
 * `httpAuthz.http1FastPath` setting.
 */
import { describe, expect, it } from 'vitest';
import { formatIssue } from '../../../src/config/issues.js';
import { HAND_OVER, INCOMPLETE, MAX_FIELDS, parseHead } from '../../../src/http/h1-parse.js';
import { compileYaml, mustCompile } from '../../helpers/config.js';
import { createTestRuntime } from '../../helpers/runtime.js';

const parse = (s: string, maxHeader = 1024, maxBody = 16) => parseHead(Buffer.from(s, 'latin1'), maxHeader, maxBody);

describe('parseHead', () => {
  // 0xA0 (the last byte of U+00E0 in UTF-8) is not OWS; values with bytes above 0x7F are read as UTF-8
  it('reads a strict head: method, target, raw headers without OWS, framing', () => {
    const text = 'POST /envoy/a?b=c HTTP/1.1\r\nHost: h\r\nX-A: \t 1 2 \t\r\nx-a:\xc3\xa0\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcGET';
    const h = parse(text);
    expect(h).toEqual({
      method: 'POST',
      url: '/envoy/a?b=c',
      rawHeaders: ['Host', 'h', 'X-A', '1 2', 'x-a', '\u00e0', 'Content-Length', '3', 'Connection', 'close'],
      headLength: text.indexOf('abcGET'),
      contentLength: 3,
      close: true,
    });
    expect(parse('GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n')).toMatchObject({ contentLength: 0, close: false });
  });

  it('gives header names exactly as sent: common ones in any case, and names one character off them', () => {
    const h = parse('GET / HTTP/1.1\r\nhost: h\r\nAuthorization: a\r\nauthorization: b\r\nx-request-idx: c\r\nx-request-i: d\r\n\r\n');
    expect(h).toMatchObject({ rawHeaders: ['host', 'h', 'Authorization', 'a', 'authorization', 'b', 'x-request-idx', 'c', 'x-request-i', 'd'] });
  });

  it('waits for the rest of a head that is still strict so far', () => {
    for (const s of ['G', 'GET /x HTTP/1.1', 'GET /x HTTP/1.1\r', 'GET /x HTTP/1.1\r\nHost: h\r\n', 'GET /x HTTP/1.1\r\nHost: h\r\n\r']) expect(parse(s), s).toBe(INCOMPLETE);
  });

  it('hands over everything outside the subset, complete or not', () => {
    const over = [
      'GET /x HTTP/1.1\nHost: h\n\n',
      'GET /x HTTP/1.1\r\nHost: h\n',
      'GET /x HTTP/1.0\r\nHost: h\r\n\r\n',
      'GET /x HTTP/1.0\r\n',
      'get /x HTTP/1.1\r\nHost: h\r\n\r\n',
      'CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET * HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET /\xe9 HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f',
      'GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nProxy-Connection: close\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\nConnection: close, upgrade\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: h\r\n${'X: 1\r\n'.repeat(MAX_FIELDS)}\r\n`,
      '\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: h\r\n ',
      'GET / HTTP/1.1\r\nX-A : ',
      'GET / HTTP/1.1\r\nX-A\r\n',
    ];
    for (const s of over) expect(parse(s), JSON.stringify(s)).toBe(HAND_OVER);
  });

  it('hands over a head over maxHeaderBytes, complete or still arriving', () => {
    const head = `GET / HTTP/1.1\r\nHost: h\r\nX: ${'a'.repeat(60)}\r\n\r\n`;
    expect(parse(head, head.length)).toMatchObject({ headLength: head.length });
    expect(parse(head, head.length - 1)).toBe(HAND_OVER);
    expect(parse(head.slice(0, 40), 39)).toBe(HAND_OVER);
  });
});

describe('Settings.httpAuthz.http1FastPath', () => {
  const yaml = (v: string) => `apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec:\n  httpAuthz: {http1FastPath: ${v}}\n`;
  it('defaults to true, may be turned off, and a wrong type names file, document and field', () => {
    const rt = createTestRuntime();
    expect(mustCompile(yaml('true'), rt).settings.httpAuthz!.http1FastPath).toBe(true);
    expect(mustCompile(yaml('false'), rt).settings.httpAuthz!.http1FastPath).toBe(false);
    expect(mustCompile('apiVersion: obo-authz.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec:\n  httpAuthz: {}\n', rt).settings.httpAuthz!.http1FastPath).toBe(true);
    expect(compileYaml(yaml('"no"'), rt, 'f.yaml').issues.map(formatIssue)).toEqual([
      'f.yaml:5:30: document 1 (Settings/s): spec.httpAuthz.http1FastPath: expected a boolean, got string',
    ]);
  });
});
