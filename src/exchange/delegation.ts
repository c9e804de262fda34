/**
 * DelegationPolicy: which actors may act for which subjects and audiences. Rules are
 * OR'ed; within a rule the actor, the subject and every requested audience must match.
 * An empty rule list denies all delegation. Optionally the subject token's `may_act`
 * claim (RFC 8693 §4.4) must name the actor. Subjects, audiences and actor subjects are globs
 * (match/strings.ts compileGlob: `*` anywhere; `*` alone = any non-empty value); an actor
 * issuer is exact, or `*` for any (including none).
 */
import type { KindDocument } from '../config/kinds.js';
import { list, obj, str, type Schema } from '../config/schema.js';
import { compileGlob, globSet, type StringMatch, type StringSet } from '../match/strings.js';
import { strs } from './compile-helpers.js';

export type MayActMode = 'Ignore' | 'IfPresent' | 'Required';

export interface ActorPattern {
  /** Exact issuer, or '*' for any (including none). */
  readonly issuer: string;
  readonly subject: StringMatch;
}

export interface DelegationRule {
  readonly actors: readonly ActorPattern[];
  readonly subjects: StringSet;
  readonly audiences: StringSet;
}

export interface CompiledDelegationPolicy {
  readonly ref: string;
  readonly rules: readonly DelegationRule[];
  readonly mayAct: MayActMode;
}

export interface RawDelegationRule {
  actors?: { issuer?: string; subject?: string }[];
  subjects?: string[];
  audiences?: string[];
}

interface RawDelegation {
  rules?: RawDelegationRule[];
  mayAct?: MayActMode;
}

const delegationSchema = obj<RawDelegation>({
  rules: list(
    obj<RawDelegationRule>({
      actors: list(obj({ issuer: str({ nonEmpty: true }), subject: str({ nonEmpty: true }) }, { required: ['subject'] }), { minItems: 1 }),
      subjects: strs,
      audiences: strs,
    }),
  ),
  mayAct: str({ enum: ['Ignore', 'IfPresent', 'Required'] }) as Schema<MayActMode>,
});

export function compileDelegationRules(rules: readonly RawDelegationRule[]): DelegationRule[] {
  return rules.map((r) => ({
    actors: (r.actors ?? []).map((a) => ({ issuer: a.issuer ?? '*', subject: compileGlob(a.subject ?? '*') })),
    subjects: globSet(r.subjects ?? ['*']),
    audiences: globSet(r.audiences ?? ['*']),
  }));
}

/** Every valid DelegationPolicy by `namespace/name` (issues reported on each document). */
export function compileDelegationPolicies(docs: readonly KindDocument[]): Map<string, CompiledDelegationPolicy> {
  const out = new Map<string, CompiledDelegationPolicy>();
  for (const k of docs) {
    const s = delegationSchema.parse(k.spec ?? {}, ['spec'], k.v);
    if (!s) continue;
    out.set(k.ref, Object.freeze({ ref: k.ref, rules: compileDelegationRules(s.rules ?? []), mayAct: s.mayAct ?? 'Ignore' }));
  }
  return out;
}

export interface Party {
  readonly sub: string;
  readonly iss: string;
}

export type DelegationVerdict = { ok: true; rule: number } | { ok: false; message: string };

function mayActEntries(v: unknown): { sub?: unknown; iss?: unknown }[] | null {
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.filter((x) => x && typeof x === 'object') as { sub?: unknown; iss?: unknown }[];
  if (typeof v === 'object') return [v as { sub?: unknown; iss?: unknown }];
  return [];
}

export function checkDelegation(
  p: CompiledDelegationPolicy,
  actor: Party,
  subject: Party,
  subjectClaims: Readonly<Record<string, unknown>>,
  audiences: readonly string[],
): DelegationVerdict {
  if (p.mayAct !== 'Ignore') {
    const entries = mayActEntries(subjectClaims['may_act']);
    if (entries === null) {
      if (p.mayAct === 'Required') return { ok: false, message: `${p.ref}: subject token has no may_act claim` };
    } else {
      const named = entries.some((e) => e.sub === actor.sub && (e.iss === undefined || e.iss === actor.iss));
      if (!named) return { ok: false, message: `${p.ref}: subject token's may_act does not name the actor` };
    }
  }
  for (let i = 0; i < p.rules.length; i++) {
    const r = p.rules[i]!;
    const actorOk = r.actors.some((a) => (a.issuer === '*' || a.issuer === actor.iss) && a.subject.test(actor.sub));
    if (!actorOk) continue;
    if (!r.subjects.test(subject.sub)) continue;
    if (!audiences.every((aud) => r.audiences.test(aud))) continue;
    return { ok: true, rule: i };
  }
  return { ok: false, message: p.rules.length === 0 ? `${p.ref}: no rules (delegation denied)` : `${p.ref}: no rule allows this actor for this subject and audience` };
}
