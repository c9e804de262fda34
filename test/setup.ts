import { afterAll, expect } from 'vitest';
import { findLeaks } from './helpers/secrets.js';
import { removeTempDirs } from './helpers/tmp.js';

// Every test file ends by proving that no token or secret reached any captured log line.
afterAll(() => {
  const leaks = findLeaks();
  expect(leaks, leaks.join('\n')).toEqual([]);
});

// Folders made with tempDir() go after every test file, also when one of its tests failed.
afterAll(removeTempDirs);
