/** A Decision for tests of what is made from one (responses, decision lines): an allow, overridable. */
import type { Decision } from '../../src/core/decision.js';
import { UpstreamMutations } from '../../src/core/state.js';

export function decision(over: Partial<Decision> = {}): Decision {
  return {
    allow: true,
    reason: 'OK',
    httpStatus: 200,
    body: '',
    denyHeaders: [],
    upstream: new UpstreamMutations(),
    attribution: {},
    identity: null,
    actor: null,
    message: 'allowed',
    trace: null,
    requestId: 'r1',
    ...over,
  };
}
