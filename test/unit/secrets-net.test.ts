/** The global no-secret-in-logs net itself must be able to fail. */
import { describe, expect, it } from 'vitest';
import { findLeaks, rememberSecret, registerLogSink } from '../helpers/secrets.js';

describe('no-secret-in-logs net', () => {
  it('flags JWT-shaped strings and remembered secrets in captured lines', () => {
    const lines = ['{"msg":"ok"}'];
    registerLogSink(lines);
    expect(findLeaks()).toEqual([]);
    lines.push('{"t":"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.AAAAAAAAAAAAAAAAAAAAAAAA"}');
    expect(findLeaks()).toHaveLength(1);
    lines.pop();
    rememberSecret('obo_live_k3y_s3cr3t');
    lines.push('{"apiKey":"obo_live_k3y_s3cr3t"}');
    expect(findLeaks()).toHaveLength(1);
    lines.pop();
    expect(findLeaks()).toEqual([]);
  });
});
