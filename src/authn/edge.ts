/**
 * Edge trust (CredentialValidator `type: EdgeHeaders`): the identity comes from headers
 * an upstream edge injected after authenticating the caller itself (for example an Istio
 * ingress gateway that validated the JWT and copied claims into headers). Those headers
 * are believed only when the request's direct peer is a configured trusted source (its
 * mTLS peer principal, or its socket address in a CIDR); from anyone else they are
 * removed before the request goes upstream and ignored.
 */
import { BlockList, isIP } from 'node:net';
import { list, obj, record, str } from '../config/schema.js';
import type { CheckState } from '../core/state.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import { applyClaimHeaders, headerName, makeIdentity, sanitizeClaimHeaders, type ClaimForwarding } from './credential-common.js';
import { localIssuer, type ValidatorTypeDef } from './validator-type.js';

export interface EdgeHeaderMap {
  readonly subject: string;
  readonly issuer?: string;
  readonly role?: string;
  readonly groups?: string;
  readonly email?: string;
  /** claim name -> header (lower case). */
  readonly claims: Readonly<Record<string, string>>;
}

export interface EdgeMemberOptions {
  readonly ref: string;
  /** Issuer when the edge sends none (or no issuer header is mapped). */
  readonly issuer: string;
  readonly principals: readonly ((p: string) => boolean)[];
  readonly blocks: BlockList | null;
  readonly headers: EdgeHeaderMap;
  readonly groupsSeparator: string;
  readonly forwardClaims: ClaimForwarding | null;
}

/** Istio principal match on the peer's SPIFFE ID: exact, `x*`, `*x`, `*` (values without `spiffe://` get it added). */
export function principalMatcher(pattern: string): (p: string) => boolean {
  const full = (s: string) => (s.startsWith('spiffe://') ? s : `spiffe://${s}`);
  if (pattern === '*') return (p) => p.length > 0;
  if (pattern.endsWith('*')) {
    const pre = full(pattern.slice(0, -1));
    return (p) => p.startsWith(pre);
  }
  if (pattern.startsWith('*')) {
    const suf = pattern.slice(1);
    return (p) => p.length > 0 && p.endsWith(suf);
  }
  const exact = full(pattern);
  return (p) => p === exact;
}

/** Parse `ipBlocks` (CIDR or single address) into a BlockList; returns the bad entry's index on error. */
export function parseBlocks(blocks: readonly string[]): { ok: true; list: BlockList } | { ok: false; index: number; error: string } {
  const list = new BlockList();
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!.trim();
    const slash = b.indexOf('/');
    const addr = slash < 0 ? b : b.slice(0, slash);
    const v = isIP(addr);
    if (v === 0) return { ok: false, index: i, error: `invalid IP address or CIDR ${JSON.stringify(b)}` };
    const type = v === 4 ? 'ipv4' : 'ipv6';
    const max = v === 4 ? 32 : 128;
    const len = slash < 0 ? String(max) : b.slice(slash + 1);
    const bits = Number(len);
    if (!/^\d{1,3}$/.test(len) || bits > max) return { ok: false, index: i, error: `invalid prefix length in ${JSON.stringify(b)}` };
    list.addSubnet(addr, bits, type);
  }
  return { ok: true, list };
}

export class EdgeMember implements CredentialValidatorMember {
  readonly name: string;
  readonly metricLabel: string;
  private readonly all: readonly string[];
  constructor(readonly o: EdgeMemberOptions) {
    this.name = `EdgeHeaders ${o.ref}`;
    this.metricLabel = this.name;
    const h = o.headers;
    this.all = [h.subject, h.issuer, h.role, h.groups, h.email, ...Object.values(h.claims)].filter((x): x is string => !!x);
  }

  /** Is the request's direct peer a trusted edge? */
  trusted(state: CheckState): boolean {
    const src = state.ctx.source;
    if (src.principal) for (const m of this.o.principals) if (m(src.principal)) return true;
    if (this.o.blocks && src.ip) {
      const v = isIP(src.ip);
      if (v !== 0 && this.o.blocks.check(src.ip, v === 4 ? 'ipv4' : 'ipv6')) return true;
    }
    return false;
  }

  sanitize(state: CheckState): void {
    sanitizeClaimHeaders(state, this.o.forwardClaims);
    if (!this.trusted(state)) for (const h of this.all) state.upstream.removeHeader(h);
  }

  validate(state: CheckState): ValidatorResult {
    const o = this.o;
    const ctx = state.ctx;
    if (!this.trusted(state)) {
      const sent = this.all.some((h) => ctx.header(h) !== undefined);
      state.trace?.add('authn', `${this.name}: peer is not a trusted edge${sent ? ': its identity headers are removed and ignored' : ''}`);
      return ABSTAIN;
    }
    const h = o.headers;
    const subject = ctx.header(h.subject)?.trim() ?? '';
    if (!subject) {
      state.trace?.add('authn', `${this.name}: trusted edge sent no ${h.subject}`);
      return ABSTAIN;
    }
    const claims: Record<string, unknown> = {};
    for (const [claim, header] of Object.entries(h.claims)) {
      const v = ctx.header(header);
      if (v !== undefined && v !== '') claims[claim] = v;
    }
    const role = h.role ? ctx.header(h.role)?.trim() : undefined;
    if (role) claims['role'] = role;
    const groups = h.groups ? ctx.header(h.groups) : undefined;
    if (groups !== undefined) {
      const list = groups.split(o.groupsSeparator).map((s) => s.trim()).filter(Boolean);
      if (list.length) claims['groups'] = list;
    }
    const email = h.email ? ctx.header(h.email)?.trim() : undefined;
    if (email) claims['email'] = email;
    const issuer = (h.issuer ? ctx.header(h.issuer)?.trim() : '') || o.issuer;
    const id = makeIdentity({ kind: 'edge', issuer, subject, claims, admittedBy: o.ref });
    applyClaimHeaders(state, o.forwardClaims, id);
    state.trace?.add('authn', `${this.name}: identity taken from trusted edge headers`);
    return { kind: 'admit', identities: [id] };
  }
}

interface RawEdge {
  trustedSources?: { principals?: string[]; ipBlocks?: string[] };
  headers?: { subject?: string; issuer?: string; role?: string; groups?: string; email?: string };
  claims?: Record<string, string>;
  groupsSeparator?: string;
}

/** CredentialValidator `type: EdgeHeaders` (`spec.edge`). */
export const EDGE_TYPE: ValidatorTypeDef<RawEdge> = {
  block: 'edge',
  schema: obj<RawEdge>(
    {
      trustedSources: obj({ principals: list(str({ nonEmpty: true })), ipBlocks: list(str({ nonEmpty: true })) }),
      headers: obj({ subject: headerName(), issuer: headerName(), role: headerName(), groups: headerName(), email: headerName() }, { required: ['subject'] }),
      claims: record(headerName()),
      groupsSeparator: str({ nonEmpty: true }),
    },
    { required: ['trustedSources', 'headers'] },
  ),
  defaultIssuer: (k) => localIssuer('edge', k),
  compile({ k, block: e, ref, issuer, forwardClaims, at }) {
    const principals = e.trustedSources?.principals ?? [];
    const ipBlocks = e.trustedSources?.ipBlocks ?? [];
    if (principals.length === 0 && ipBlocks.length === 0) {
      k.v.error(at('trustedSources'), 'name at least one trusted principal or ipBlock (edge headers from anyone else are removed)');
    }
    let blocks = null;
    if (ipBlocks.length) {
      const r = parseBlocks(ipBlocks);
      if (!r.ok) k.v.error(at('trustedSources', 'ipBlocks', r.index), r.error);
      else blocks = r.list;
    }
    const h = e.headers!;
    const claims: Record<string, string> = {};
    for (const [c, hn] of Object.entries(e.claims ?? {})) {
      if (['iss', 'sub'].includes(c)) k.v.error(at('claims', c), `claim ${c} comes from headers.${c === 'iss' ? 'issuer' : 'subject'}`);
      claims[c] = hn.toLowerCase();
    }
    const member = k.v.hasErrors
      ? null
      : new EdgeMember({
          ref,
          issuer,
          principals: Object.freeze(principals.map(principalMatcher)),
          blocks,
          headers: Object.freeze({
            subject: h.subject!.toLowerCase(),
            ...(h.issuer ? { issuer: h.issuer.toLowerCase() } : {}),
            ...(h.role ? { role: h.role.toLowerCase() } : {}),
            ...(h.groups ? { groups: h.groups.toLowerCase() } : {}),
            ...(h.email ? { email: h.email.toLowerCase() } : {}),
            claims: Object.freeze(claims),
          }),
          groupsSeparator: e.groupsSeparator ?? ',',
          forwardClaims,
        });
    return { member, locations: [], opaqueHeaders: [], takesJwt: false };
  },
};
