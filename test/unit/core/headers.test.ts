import { describe, expect, it } from 'vitest';
import { isToken, isValidHeaderName, isValidHeaderValue } from '../../../src/core/headers.js';

describe('header names, methods and values', () => {
  it('a token is RFC 9110 tchars only, asked once or many times', () => {
    for (let round = 0; round < 3; round++) {
      for (const ok of ['GET', 'POST', 'x-user-sub', 'X-Custom', "!#$%&'*+-.^_`|~09azAZ"]) expect(isToken(ok), ok).toBe(true);
      for (const bad of ['', 'GET ', 'a:b', 'a\r\nb', 'é', 'a b', '(x)', 'a/b']) expect(isToken(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('a header name to send is lower case tchars, with `:` only as a pseudo-header prefix', () => {
    for (let round = 0; round < 3; round++) {
      for (const ok of ['x-user-sub', ':path', 'authorization']) expect(isValidHeaderName(ok), ok).toBe(true);
      for (const bad of ['X-User-Sub', 'a:b', '::path', '', 'x\n', 'x y']) expect(isValidHeaderName(bad), JSON.stringify(bad)).toBe(false);
    }
  });

  it('stays right past the bound of remembered valid strings (the set is emptied, not trusted)', () => {
    for (let i = 0; i < 3000; i++) {
      expect(isToken(`m${i}`)).toBe(true);
      expect(isToken(`m${i} `)).toBe(false);
      expect(isValidHeaderName(`x-h${i}`)).toBe(true);
      expect(isValidHeaderName(`X-h${i}`)).toBe(false);
    }
    expect(isToken('m0')).toBe(true);
    expect(isToken('m0\t')).toBe(false);
  });

  it('a value to send has no CR, LF or NUL', () => {
    expect(isValidHeaderValue('Bearer abc def')).toBe(true);
    for (const bad of ['a\rb', 'a\nb', 'a\0b']) expect(isValidHeaderValue(bad)).toBe(false);
  });
});
