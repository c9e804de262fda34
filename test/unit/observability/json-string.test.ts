/** jsonString (the decision line's string escaper) is exactly JSON.stringify for every string. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonString } from '../../../src/observability/json-string.js';

describe('jsonString', () => {
  it('hostile strings: quotes, backslashes, control characters, lone and paired surrogates, non-ASCII', () => {
    const cases = [
      '',
      'plain',
      '"',
      '\\',
      'a"b\\c',
      '\u0000\u0001\u001f\u0020',
      '\n\r\t\b\f\u000b',
      '\u007f\u0080\u00ff',
      '\u2028\u2029',
      'é ü 漢字 ✓',
      '\ud83d\ude00',
      '\ud800',
      '\udc00',
      'x\ud800y',
      '\udc00\ud800',
      '\ud83d\ude00\ud83d',
      '</script>',
      'x'.repeat(10_000) + '"',
    ];
    for (const s of cases) expect(jsonString(s)).toBe(JSON.stringify(s));
  });

  it('any string, any UTF-16 code units', () => {
    const unit = fc.oneof(fc.constantFrom('"', '\\', '\u0000', '\u001f', '\u007f', 'é', '\ud800', '\udfff', '\ud83d', '\ude00'), fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit, maxLength: 64 }), fc.string({ unit: 'binary', maxLength: 64 }), fc.string()), (s) => jsonString(s) === JSON.stringify(s)),
      { numRuns: 3000 },
    );
  });
});
