/**
 * Authentication stage (phase 2): an ordered credential chain (chain.ts) whose first
 * member is the workload's RequestAuthentication jwtRules (request-authentication.ts,
 * jwt-rules-member.ts), then its CredentialValidators (credential-validator.ts).
 * compileAuthn validates RequestAuthentication / CredentialValidator documents through
 * `k.v` and returns an immutable AuthnConfig; authenticate() sets state.identity /
 * state.identities and the upstream header mutations, or returns a Deny. It never throws
 * for bad input.
 */
import type { CompileContext } from '../config/kinds.js';
import type { KindDocument } from '../config/kinds.js';
import type { Settings } from '../config/settings.js';
import type { CheckState, Deny } from '../core/state.js';
import { runChain, type ChainOptions, type CredentialValidatorMember } from './chain.js';
import { challengeFor, BEARER_LOCATION } from './credential-common.js';
import { compileCredentialValidator, CredentialValidatorIndex, JWT_DEFAULT_ORDER, type CompiledValidator } from './credential-validator.js';
import { normalizeHost, routeMatches } from '../match/route.js';
import { DEFAULT_JWKS_TUNING, type JwksTuning } from '../jwt/jwks-source.js';
import { JwtRulesMember } from './jwt-rules-member.js';
import { compileRequestAuthentication, RequestAuthenticationIndex, type CompiledJwtRule, type CompiledRequestAuthentication } from './request-authentication.js';
import { deny } from '../core/state.js';
import { isCorsPreflight } from '../core/context.js';
import { JWT_STATUS } from '../jwt/jwt-format.js';

export type { CredentialValidatorMember, ValidatorResult } from './chain.js';
export type { JwksTuning } from '../jwt/jwks-source.js';
export { createJwtValidator, type JwtResult, type JwtValidator, type JwtValidatorOptions } from '../jwt/jwt-validator.js';
export type { CompiledValidator } from './credential-validator.js';

export interface AuthnInput {
  readonly requestAuthentications: readonly KindDocument[];
  readonly credentialValidators: readonly KindDocument[];
}

export interface AuthnConfig {
  /** Number of RequestAuthentication documents. */
  readonly count: number;
  readonly requestAuthentications: RequestAuthenticationIndex;
  /** Status for ERR_JWKS_UNAVAILABLE (Settings.jwksUnavailableStatus). */
  readonly jwksUnavailableStatus: 401 | 503;
  readonly jwksTuning: JwksTuning;
  /** CredentialValidator documents (issue 6): the rest of the chain. */
  readonly validators: CredentialValidatorIndex;
  /**
   * The chain of a workload to which only jwtRules apply, by its rules array: it depends on
   * nothing else in this config, so it is built once (see chainFor).
   */
  readonly jwtOnlyChains: WeakMap<readonly CompiledJwtRule[], Chain>;
}

/**
 * JWKS tuning from Settings when the Settings kind carries a `jwks` block (optional until
 * Settings grows one); otherwise the defaults (refresh 20 min, stale max 7 days, ...).
 */
function tuningFrom(settings: Settings): JwksTuning {
  const extra = (settings as Settings & { jwks?: Partial<JwksTuning> }).jwks;
  return Object.freeze({ ...DEFAULT_JWKS_TUNING, ...(extra ?? {}) });
}

export function compileAuthn(input: AuthnInput, cc: CompileContext): AuthnConfig {
  const steps = compileAuthnSteps(input, cc);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * compileAuthn as steps, yielding after each document: the server compiles a reload in
 * slices between Checks (pipeline/compile.ts compileDocumentsSliced).
 */
export function* compileAuthnSteps(input: AuthnInput, cc: CompileContext): Generator<void, AuthnConfig, void> {
  const tuning = tuningFrom(cc.settings);
  const compiled: CompiledRequestAuthentication[] = [];
  for (const k of input.requestAuthentications) {
    const c = compileRequestAuthentication(k, cc, tuning);
    if (c) compiled.push(c);
    yield;
  }
  const validators: CompiledValidator[] = [];
  for (const k of input.credentialValidators) {
    const v = compileCredentialValidator(k, cc);
    if (v) validators.push(v);
    yield;
  }
  return Object.freeze({
    count: input.requestAuthentications.length,
    requestAuthentications: new RequestAuthenticationIndex(compiled, cc.settings.rootNamespace),
    jwksUnavailableStatus: cc.settings.jwksUnavailableStatus,
    jwksTuning: tuning,
    validators: new CredentialValidatorIndex(validators, cc.settings.rootNamespace),
    jwtOnlyChains: new WeakMap(),
  });
}

export interface Chain {
  readonly members: readonly CredentialValidatorMember[];
  /**
   * Every member that applies to the workload by scope, whether or not its `match` holds
   * for this request (and the jwtRules member): all of them sanitize before anything else.
   */
  readonly sanitizers: readonly CredentialValidatorMember[];
  /** The validator that makes authentication required for this request, if any. */
  readonly requiredBy: CompiledValidator | null;
  readonly jwtOnly: boolean;
}

const NO_CHAIN: Chain = Object.freeze({ members: Object.freeze([]), sanitizers: Object.freeze([]), requiredBy: null, jwtOnly: true });
const SANITIZED: ChainOptions = Object.freeze({ sanitized: true });

/**
 * The chain for this request: the jwtRules of the applying RequestAuthentications at
 * order 0 (or the lowest `order` of an applying `type: JWT` validator) and every applying
 * CredentialValidator whose `match` holds, sorted by order (jwtRules first on a tie, then
 * root-namespace validators, then the workload's, each by name).
 *
 * `match` decides who validates, never who sanitizes: a validator left out of the chain by
 * its `match` still removes inbound copies of the headers it produces or trusts (edge
 * identity headers from an untrusted peer, forwardClaims headers), else a client could
 * send them to the backend on every route the validator does not cover.
 */
function chainFor(state: CheckState, cfg: AuthnConfig): Chain {
  const w = state.ctx.workload;
  const rules: readonly CompiledJwtRule[] = cfg.requestAuthentications.rulesFor(w);
  const all = cfg.validators.count > 0 ? cfg.validators.forWorkload(w) : [];
  if (all.length === 0) {
    if (rules.length === 0) return NO_CHAIN;
    // Only the jwtRules: the chain depends on the rules (one frozen array per workload) and
    // this config's deny status alone, so the config keeps it.
    let chain = cfg.jwtOnlyChains.get(rules);
    if (!chain) {
      const members = Object.freeze([new JwtRulesMember(rules, { jwksUnavailableStatus: cfg.jwksUnavailableStatus })]);
      chain = Object.freeze({ members, sanitizers: members, requiredBy: null, jwtOnly: true });
      cfg.jwtOnlyChains.set(rules, chain);
    }
    return chain;
  }
  const ctx = state.ctx;
  // Normalized once (case, `:port`, trailing dot): `match` and `required` must hold for every
  // spelling of a host that reaches the same virtual host (a miss would make it not required).
  const host = normalizeHost(ctx.host);
  let requiredBy: CompiledValidator | null = null;
  let jwtOrder: number | undefined;
  const entries: { order: number; rank: number; member: CredentialValidatorMember; v?: CompiledValidator }[] = [];
  const sanitizers: CredentialValidatorMember[] = [];
  all.forEach((v, i) => {
    const takesPart = !v.match || routeMatches(v.match, ctx, host);
    if (!requiredBy && v.required && (v.required === true ? takesPart : routeMatches(v.required, ctx, host))) requiredBy = v;
    if (v.member) sanitizers.push(v.member);
    if (!takesPart) {
      if (v.member) state.trace?.add('authn', `${v.member.name}: match does not hold for this request: not in the chain (its headers are still sanitized)`);
      return;
    }
    if (v.type === 'JWT') jwtOrder = Math.min(jwtOrder ?? v.order, v.order);
    else if (v.member) entries.push({ order: v.order, rank: 1 + i, member: v.member, v });
  });
  const order = jwtOrder ?? JWT_DEFAULT_ORDER;
  if (rules.length) {
    const opaque = new Set<string>();
    let k8sAfter = false;
    for (const e of entries) {
      for (const h of e.v!.opaqueHeaders) opaque.add(h);
      if (e.v!.takesJwt && e.order >= order) k8sAfter = true;
    }
    const member = new JwtRulesMember(rules, { jwksUnavailableStatus: cfg.jwksUnavailableStatus, nonJwtHeaders: opaque, unknownIssuerSoft: k8sAfter });
    entries.push({ order, rank: 0, member });
    sanitizers.push(member);
  }
  entries.sort((a, b) => a.order - b.order || a.rank - b.rank);
  return { members: entries.map((e) => e.member), sanitizers, requiredBy, jwtOnly: entries.every((e) => e.rank === 0) };
}

/** 401 ERR_NO_VALIDATOR_ADMITTED with one challenge per credential scheme of the chain. */
function noValidatorAdmitted(state: CheckState, cfg: AuthnConfig, chain: Chain, by: CompiledValidator) {
  const challenges = new Set<string>();
  const all = cfg.validators.forWorkload(state.ctx.workload);
  const ctx = state.ctx;
  const host = normalizeHost(ctx.host);
  for (const v of all) {
    if (v.type === 'JWT' || (v.match && !routeMatches(v.match, ctx, host))) continue;
    for (const l of v.locations) challenges.add(challengeFor(state, l, false));
  }
  if (chain.members.some((m) => m instanceof JwtRulesMember) || challenges.size === 0) challenges.add(challengeFor(state, BEARER_LOCATION, false));
  // Bearer first: the scheme most clients understand.
  const list = [...challenges].sort((a, b) => (a.startsWith('Bearer ') ? 0 : 1) - (b.startsWith('Bearer ') ? 0 : 1));
  return deny('ERR_NO_VALIDATOR_ADMITTED', `authentication is required by ${by.ref} and no validator admitted the request (${chain.members.length} in the chain)`, {
    status: 401,
    // Only jwtRules in the chain: Envoy's jwt_authn text for a required token that is missing.
    ...(chain.jwtOnly && chain.members.length > 0 ? { body: JWT_STATUS.JwtMissed } : {}),
    headers: [['www-authenticate', list.join(', ')]],
    policy: by.ref,
  });
}

export function authenticate(state: CheckState, cfg: AuthnConfig): Deny | null | Promise<Deny | null> {
  // Recorded for the stages after authn: an exchange strips every place a user token can be.
  state.tokenLocations = cfg.requestAuthentications.locationsFor(state.ctx.workload);
  const chain = chainFor(state, cfg);
  // Before any early return: whatever takes part, no applying validator's headers may be forged.
  for (const m of chain.sanitizers) m.sanitize?.(state);
  if (chain.members.length === 0 && !chain.requiredBy) {
    state.trace?.add(
      'authn',
      chain.sanitizers.length
        ? 'no credential validator takes part in this request (their headers were sanitized): request continues without identity'
        : 'no RequestAuthentication or CredentialValidator applies to this workload',
    );
    return null;
  }
  if (state.trace) {
    state.trace.add('authn', `credential chain: ${chain.members.map((m) => m.name).join(' -> ') || '(empty)'}${chain.requiredBy ? ` (required by ${chain.requiredBy.ref})` : ''}`);
  }
  const requiredBy = chain.requiredBy;
  if (!requiredBy) return runChain(state, chain.members, SANITIZED);
  return runChain(state, chain.members, {
    sanitized: true,
    onNoAdmit: (s) => {
      // A browser session (login stage) is an admitted identity.
      if (s.identity) return null;
      // Envoy's jwt_authn lets CORS preflights through whatever is required.
      if (isCorsPreflight(s)) {
        s.trace?.add('authn', 'CORS preflight: authentication requirement skipped');
        return null;
      }
      const d = noValidatorAdmitted(s, cfg, chain, requiredBy);
      s.trace?.add('authn', `denied 401: ${d.message}`);
      return d;
    },
  });
}


