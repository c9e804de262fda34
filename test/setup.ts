import { afterAll, expect } from 'vitest';
import fc from 'fast-check';
import { findLeaks } from './helpers/secrets.js';
import { removeTempDirs } from './helpers/tmp.js';

// Every test file ends by proving that no token or secret reached any captured log line.
afterAll(() => {
  const leaks = findLeaks();
  expect(leaks, leaks.join('\n')).toEqual([]);
});

// Folders made with tempDir() go after every test file, also when one of its tests failed.
afterAll(removeTempDirs);

// Property tests (fast-check) draw from one fixed seed, so a run of `npm test` is repeatable
// and CI cannot fail on a draw nobody can reproduce. `FC_SEED=<n>` replays or explores another
// sequence (`FC_SEED=random` draws a fresh seed; fast-check prints it with any failure), and
// `FC_RUNS=<n>` scales every property's run count for a longer fuzzing session.
const seedEnv = process.env.FC_SEED;
fc.configureGlobal({
  seed: seedEnv === 'random' ? Date.now() ^ (Math.random() * 0x100000000) : seedEnv ? Number(seedEnv) : 0x0b0a07,
  ...(process.env.FC_RUNS ? { numRuns: Number(process.env.FC_RUNS) } : {}),
});
