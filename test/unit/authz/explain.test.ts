/** --explain output (state.trace) and the attribution that reaches dynamic_metadata. */
import { REASONS } from '../../../src/core/reasons.js';
import { describe, expect, it } from 'vitest';
import { authorize } from '../../../src/authz/index.js';
import { evaluate } from '../../../src/pipeline/pipeline.js';
import { decisionMetadata } from '../../../src/respond/respond.js';
import { createTestRuntime } from '../../helpers/runtime.js';
import { compileDocs, makeState, policy, rawRequest } from './harness.js';

const runtime = createTestRuntime();
const cfg = compileDocs(
  [
    policy('ext', { action: 'CUSTOM', provider: { name: 'obo-authz' }, rules: [{}] }, { namespace: 'istio-system' }),
    policy('deny-debug', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/debug*'] } }] }] }),
    policy('allow-read', {
      rules: [
        { from: [{ source: { namespaces: ['team-a'] } }], to: [{ operation: { methods: ['GET'] } }] },
        { to: [{ operation: { methods: ['GET'], paths: ['/public/*'] } }] },
        { when: [{ key: 'request.headers[authorization]', values: ['Bearer admin'] }] },
      ],
    }),
    policy('web-only', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
    policy('audit-all', { action: 'AUDIT', rules: [{}] }),
    policy('shadow-deny', { action: 'DENY', rules: [{}] }, { annotations: { 'istio.io/dry-run': 'true' } }),
  ],
  runtime,
);
const web = 'web';

function explain(req: Parameters<typeof makeState>[2], identity: Parameters<typeof makeState>[3] = null) {
  const state = makeState(cfg, runtime, { contextExtensions: { namespace: 'foo', 'label.app': 'api' }, ...req }, identity, true);
  const res = authorize(state, cfg.authz);
  return { res, state, lines: state.trace!.entries.filter((e) => e.stage === 'authz').map((e) => e.message) };
}

describe('--explain', () => {
  it('lists every applicable policy, every rule and the first failing field when no ALLOW matched', () => {
    const { res, lines, state } = explain({ method: 'POST', path: '/x', headers: { authorization: 'Bearer secret-token' } });
    expect(res?.policy).toBeUndefined();
    expect(res?.message).toBe('no ALLOW AuthorizationPolicy matched (1 applicable)');
    const text = lines.join('\n');
    expect(text).toContain('CUSTOM istio-system/ext [root namespace: all workloads] provider "obo-authz": not evaluated');
    expect(text).toContain('ALLOW foo/web-only: not applicable (selector app=web does not match the workload)');
    expect(text).toContain('AUDIT foo/audit-all [whole namespace]: rule[0] matched -> audited');
    expect(text).toContain('DENY foo/deny-debug [whole namespace]: no rule matched');
    expect(text).toContain('  rule[0]: no match: to[0].operation.paths: request has "/x", which matches none of ["/debug*"]');
    expect(text).toContain('ALLOW foo/allow-read [whole namespace]: no rule matched');
    expect(text).toContain('  rule[0]: no match: from[0].source.namespaces: request has principal (absent), which matches none of ["team-a"]');
    expect(text).toContain('  rule[1]: no match: to[0].operation.methods: request has "POST", which matches none of ["GET"]');
    // secret header values never appear in the trace
    expect(text).toContain('  rule[2]: no match: when[0] request.headers[authorization] values: request has (present, value redacted)');
    expect(text).not.toContain('secret-token');
    expect(text).toContain('DENY (dry-run) foo/shadow-deny [whole namespace]: rule[0] matched (dry-run: recorded as shadow, not enforced)');
    expect(lines.at(-1)).toBe('decision: deny (1 ALLOW policy applies and none matched; see the failing fields above)');
    expect(state.attribution.shadow).toEqual([{ policy: 'foo/shadow-deny', rule: 0, wouldDeny: true }]);
    expect(state.attribution.audit).toEqual(['foo/audit-all']);
  });

  it('names the deciding DENY policy and rule', () => {
    const { res, lines } = explain({ path: '/debug/vars' });
    expect(res).toMatchObject({ reason: 'ERR_RBAC_DENIED', policy: 'foo/deny-debug', rule: 0 });
    expect(res!.body ?? REASONS[res!.reason].body).toBe('RBAC: access denied');
    expect(lines).toContain('DENY foo/deny-debug [whole namespace]: rule[0] matched -> deny');
    expect(lines.at(-1)).toBe('decision: deny by DENY policy foo/deny-debug rule[0]');
  });

  it('names the deciding ALLOW policy and rule, and shows the other rules', () => {
    const { res, lines, state } = explain({ method: 'GET', path: '/public/a', source: { principal: 'spiffe://td/ns/team-b/sa/x' } });
    expect(res).toBeNull();
    expect(state.attribution).toMatchObject({ policy: 'foo/allow-read', rule: 1 });
    expect(lines).toContain('ALLOW foo/allow-read [whole namespace]: rule[1] matched -> allow');
    expect(lines).toContain('  rule[0]: no match: from[0].source.namespaces: request has principal "spiffe://td/ns/team-b/sa/x", which matches none of ["team-a"]');
    expect(lines).toContain('  rule[1]: matched');
    expect(lines.at(-1)).toBe('decision: allow by ALLOW policy foo/allow-read rule[1]');
  });

  it('explains an ALLOW without rules and an empty rule', () => {
    const c = compileDocs([policy('nothing', {}), policy('everything', { action: 'AUDIT', rules: [{}] })]);
    const state = makeState(c, runtime, { contextExtensions: { namespace: 'foo' } }, null, true);
    authorize(state, c.authz);
    const text = state.trace!.entries.map((e) => e.message).join('\n');
    expect(text).toContain('ALLOW foo/nothing [whole namespace]: no rules, matches nothing (an ALLOW policy without rules denies every request)');
    expect(text).toContain('  rule[0]: matched (empty rule matches every request)');
  });

  it('names a not-field failure as excluded', () => {
    const c = compileDocs([policy('deny-not-get', { action: 'DENY', rules: [{ to: [{ operation: { notMethods: ['GET'] } }] }] })]);
    const state = makeState(c, runtime, { method: 'GET', contextExtensions: { namespace: 'foo' } }, null, true);
    expect(authorize(state, c.authz)).toBeNull();
    expect(state.trace!.entries.map((e) => e.message)).toContain(
      '  rule[0]: no match: to[0].operation.notMethods: request has "GET", which matches one of the excluded ["GET"]',
    );
    expect(state.trace!.entries.at(-1)!.message).toBe('decision: allow (no DENY matched and no ALLOW policy applies to this workload)');
  });

  it('builds no trace on the hot path', () => {
    const state = makeState(cfg, runtime, { method: 'POST', contextExtensions: { namespace: 'foo', 'label.app': web } }, null, false);
    expect(authorize(state, cfg.authz)).toBeNull();
    expect(state.trace).toBeNull();
    expect(state.attribution).toMatchObject({ policy: 'foo/web-only', rule: 0 });
  });
});

describe('attribution reaches dynamic_metadata', () => {
  it('deny: policy, rule and reason', async () => {
    const d = await evaluate(rawRequest({ path: '/debug/x', contextExtensions: { namespace: 'foo' } }), cfg, runtime, { explain: true });
    expect(d.allow).toBe(false);
    expect(d.httpStatus).toBe(403);
    expect(d.body).toBe('RBAC: access denied');
    expect(decisionMetadata(d)).toMatchObject({ decision: 'deny', reason: 'ERR_RBAC_DENIED', policy: 'foo/deny-debug', rule: 0 });
    expect(d.trace!.entries.some((e) => e.stage === 'authz' && e.message.startsWith('decision: deny by DENY policy foo/deny-debug'))).toBe(true);
  });

  it('allow: the ALLOW policy and rule that decided', async () => {
    const d = await evaluate(rawRequest({ method: 'GET', path: '/public/x', contextExtensions: { namespace: 'foo', 'label.app': 'api' } }), cfg, runtime);
    expect(d.allow).toBe(true);
    expect(decisionMetadata(d)).toMatchObject({ decision: 'allow', reason: 'OK', policy: 'foo/allow-read', rule: 1 });
  });
});
