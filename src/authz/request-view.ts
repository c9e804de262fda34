/**
 * The per-Check view of a request that AuthorizationPolicy fields read: IPs are parsed and
 * derived values (lower-cased host, trust domain) computed lazily, at most once per Check,
 * into preallocated slots. One view belongs to one compiled policy index and is reset for
 * every Check (evaluation is synchronous, so Checks never share it).
 */
import type { McpView } from '../core/mcp.js';
import type { RequestContext } from '../core/context.js';
import type { Identity } from '../core/identity.js';
import { parseIp } from '../match/ip.js';

const SPIFFE = 'spiffe://';

export class IpSlot {
  /** -1 = not parsed yet, 0 = absent/invalid, 4 or 6. */
  version: -1 | 0 | 4 | 6 = -1;
  readonly words = new Uint32Array(4);
}

export class RequestView {
  ctx!: RequestContext;
  identity: Identity | null = null;
  /** MCP facts (request.mcp.* keys), undefined when the pipeline set none. */
  mcp: McpView | undefined = undefined;
  private hostLower: string | null = null;
  private trustDomain: string | null = null;
  private readonly src = new IpSlot();
  private readonly remote = new IpSlot();
  private readonly dst = new IpSlot();

  reset(ctx: RequestContext, identity: Identity | null, mcp?: McpView): this {
    this.ctx = ctx;
    this.identity = identity;
    this.mcp = mcp;
    this.hostLower = null;
    this.trustDomain = null;
    this.src.version = -1;
    this.remote.version = -1;
    this.dst.version = -1;
    return this;
  }

  host(): string | undefined {
    const h = this.ctx.host;
    if (h === '') return undefined;
    return (this.hostLower ??= h.toLowerCase());
  }

  /** Peer principal (URI SAN) or undefined when the connection carried none. */
  principal(): string | undefined {
    const p = this.ctx.source.principal;
    return p === '' ? undefined : p;
  }

  /** Trust domain of a `spiffe://<td>/...` peer principal. */
  peerTrustDomain(): string | undefined {
    if (this.trustDomain !== null) return this.trustDomain === '' ? undefined : this.trustDomain;
    const p = this.ctx.source.principal;
    let td = '';
    if (p.startsWith(SPIFFE)) {
      const end = p.indexOf('/', SPIFFE.length);
      td = end < 0 ? p.slice(SPIFFE.length) : p.slice(SPIFFE.length, end);
    }
    this.trustDomain = td;
    return td === '' ? undefined : td;
  }

  ip(which: IpWhich): IpSlot {
    const slot = which === 'source' ? this.src : which === 'remote' ? this.remote : this.dst;
    if (slot.version === -1) {
      const text = which === 'source' ? this.ctx.source.ip : which === 'remote' ? this.ctx.remoteIp : this.ctx.destination.ip;
      slot.version = parseIp(text, slot.words);
    }
    return slot;
  }
}

export type IpWhich = 'source' | 'remote' | 'destination';
