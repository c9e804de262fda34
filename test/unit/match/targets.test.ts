/** match/targets.ts: URL-aware token-endpoint targets (issue 17, finding 6). */
import { describe, expect, it } from 'vitest';
import { isValidTarget, TargetPattern } from '../../../src/match/targets.js';

describe('TargetPattern', () => {
  it.each([
    ['https://mcp-*.example.com', 'https://mcp-1.example.com', true],
    ['https://mcp-*.example.com', 'https://mcp-1.example.com:443', false],
    ['https://mcp-*.example.com:443', 'https://mcp-1.example.com', true],
    ['https://*.example.com', 'https://a.example.com', true],
    ['https://*.example.com', 'https://a.b.example.com', false],
    ['https://api.example.com/*', 'https://api.example.com/any/depth', true],
    ['https://api.example.com/*', 'https://api.example.com', true],
    ['urn:example:*', 'urn:example:x', true],
    ['urn:example:*', 'urn:example:x:y', false],
    ['api://backend', 'api://backend', true],
    ['*', 'anything', true],
    ['*', 'bad\ttab', false],
  ])('%s ~ %s = %s', (p, t, want) => expect(new TargetPattern(p).test(t)).toBe(want));
});

describe('isValidTarget', () => {
  it.each(['a b', 'a\nb', 'a\u0085b', 'a\u007fb', '', 'x'.repeat(3000)])('%j is refused', (t) => expect(isValidTarget(t)).toBe(false));
  it.each(['https://a.example.com/x', 'mcp-tools', 'urn:x:y'])('%j is a target', (t) => expect(isValidTarget(t)).toBe(true));
});
