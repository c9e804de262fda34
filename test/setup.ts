import { afterAll, expect } from 'vitest';
import { findLeaks } from './helpers/secrets.js';

// Every test file ends by proving that no token or secret reached any captured log line.
afterAll(() => {
  const leaks = findLeaks();
  expect(leaks, leaks.join('\n')).toEqual([]);
});
