/**
 * The layering of src/ (docs/architecture.md): the import graph is the pipeline, one floor per
 * role, and arrows only point down:
 *   composition  src/main.ts, src/cli/, src/grpc/, src/http/, src/pipeline/
 *   stages       src/login/, src/authn/, src/authz/, src/exchange/, src/respond/, src/mcp/ (side by side)
 *   libraries    src/jwt/, src/kubernetes/, src/net/, src/observability/, src/config/, src/match/,
 *                src/session/, src/redis/
 *   core         src/core/
 * Type-only imports count (tsPreCompilationDeps): a type is a dependency too.
 * `npm test` runs this (npm run lint:arch); a new stage or library folder is added to its list here.
 */
const STAGES = '(login|authn|authz|exchange|respond|mcp)';
const LIBRARIES = '(jwt|kubernetes|net|observability|config|match|session|redis)';
const COMPOSITION = '^src/(main\\.ts|cli/|grpc/|http/|pipeline/)';

module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'An import cycle means two modules cannot be understood (or loaded) one after the other.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'stages-side-by-side',
      severity: 'error',
      comment: 'A stage never imports another stage: what they share lives in core/ or a library.',
      from: { path: `^src/${STAGES}/` },
      to: { path: `^src/${STAGES}/`, pathNot: '^src/$1/' },
    },
    {
      name: 'core-is-the-floor',
      severity: 'error',
      comment: 'core/ imports nothing else in src/.',
      from: { path: '^src/core/' },
      to: { path: '^src/', pathNot: '^src/core/' },
    },
    {
      name: 'libraries-below-stages',
      severity: 'error',
      comment: 'Libraries import only core/ and other libraries.',
      from: { path: `^src/${LIBRARIES}/` },
      to: { path: '^src/', pathNot: `^src/(core|${LIBRARIES.slice(1, -1)})/` },
    },
    {
      name: 'composition-on-top',
      severity: 'error',
      comment: 'Nothing below the composition floor imports it.',
      from: { path: '^src/', pathNot: COMPOSITION },
      to: { path: COMPOSITION },
    },
    {
      name: 'src-not-from-tests',
      severity: 'error',
      comment: 'Production code never imports test or bench code.',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
