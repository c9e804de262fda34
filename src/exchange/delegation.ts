/**
 * DelegationPolicy: which actors may act for which subjects and audiences. Rules are
 * OR'ed; within a rule the actor, the subject and every requested audience must match.
 * An empty rule list denies all delegation. Optionally the subject token's `may_act`
 * claim (RFC 8693 §4.4) must name the actor.
 */
import { compileGlob } from './util.js';

export type MayActMode = 'Ignore' | 'IfPresent' | 'Required';

export interface ActorPattern {
  /** Exact issuer, or '*' for any (including none). */
  readonly issuer: string;
  readonly subject: (s: string) => boolean;
}

export interface DelegationRule {
  readonly actors: readonly ActorPattern[];
  readonly subjects: readonly ((s: string) => boolean)[];
  readonly audiences: readonly ((s: string) => boolean)[];
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

export function compileDelegationRules(rules: readonly RawDelegationRule[]): DelegationRule[] {
  return rules.map((r) => ({
    actors: (r.actors ?? []).map((a) => ({ issuer: a.issuer ?? '*', subject: compileGlob(a.subject ?? '*') })),
    subjects: (r.subjects ?? ['*']).map(compileGlob),
    audiences: (r.audiences ?? ['*']).map(compileGlob),
  }));
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
    const actorOk = r.actors.some((a) => (a.issuer === '*' || a.issuer === actor.iss) && a.subject(actor.sub));
    if (!actorOk) continue;
    if (!r.subjects.some((m) => m(subject.sub))) continue;
    if (!audiences.every((aud) => r.audiences.some((m) => m(aud)))) continue;
    return { ok: true, rule: i };
  }
  return { ok: false, message: p.rules.length === 0 ? `${p.ref}: no rules (delegation denied)` : `${p.ref}: no rule allows this actor for this subject and audience` };
}
