/**
 * Session keys and sealing: a key list read from files (the first key seals, every key
 * opens, so keys rotate by prepending a new one and dropping the old one after a session
 * lifetime), and compact JWE with `alg: dir`, `enc: A256GCM` (RFC 7516 / RFC 7518 §5.3)
 * made with node:crypto synchronously, so opening a session cookie on a Check needs no
 * promise. The format is standard JWE: jose's compactDecrypt opens it (tested).
 *
 * AES-256-GCM both encrypts and authenticates: a changed byte anywhere (header, IV,
 * ciphertext, tag) fails the tag check, so a forged or altered cookie is simply "no session".
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Path } from '../config/issues.js';
import { missingOutsideCluster, type OutsideCluster } from '../config/outside-cluster.js';
import type { ValidationContext } from '../config/schema.js';

export interface SessionKey {
  /** Key id in the JWE header: a hash of the key (never the key). */
  readonly kid: string;
  readonly key: Buffer;
  /** base64url(UTF-8(protected header)): also the AAD of the encryption. */
  readonly header: string;
}

/** Parse a key file: 32 bytes written as base64, base64url or hex (whitespace ignored). */
export function parseKey(text: string): Buffer | string {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (b.length === 32) return b;
    return `the key must be 32 bytes (AES-256), got ${b.length} after base64 decoding`;
  }
  return 'the key must be 32 random bytes written as base64, base64url or 64 hex digits';
}

function makeKey(key: Buffer): SessionKey {
  const kid = createHash('sha256').update('obo-authz/session-key/v1\0').update(key).digest('base64url').slice(0, 16);
  const header = Buffer.from(JSON.stringify({ alg: 'dir', enc: 'A256GCM', kid })).toString('base64url');
  return Object.freeze({ kid, key, header });
}

export class SessionKeys {
  readonly keys: readonly SessionKey[];
  private readonly byKid: ReadonlyMap<string, SessionKey>;
  /** A digest of the key list (shared-resource keys, never the key bytes). */
  readonly id: string;

  constructor(keys: readonly Buffer[]) {
    if (keys.length === 0) throw new Error('at least one session key is required');
    this.keys = Object.freeze(keys.map(makeKey));
    this.byKid = new Map(this.keys.map((k) => [k.kid, k]));
    this.id = this.keys.map((k) => k.kid).join(',');
  }

  /** Read key files (first = the sealing key). Returns an error text naming the file index. */
  static fromFiles(paths: readonly string[], texts?: string[]): SessionKeys | { error: string; index: number } {
    const out: Buffer[] = [];
    for (let i = 0; i < paths.length; i++) {
      let text: string;
      try {
        text = readFileSync(paths[i]!, 'utf8');
      } catch (e) {
        return { error: `cannot read key file: ${(e as NodeJS.ErrnoException).code ?? 'error'}`, index: i };
      }
      const k = parseKey(text);
      if (typeof k === 'string') return { error: k, index: i };
      texts?.push(text.trim());
      out.push(k);
    }
    return new SessionKeys(out);
  }

  /** Seal with the first key: compact JWE, a fresh 96-bit IV each time. */
  seal(plaintext: string): string {
    const k = this.keys[0]!;
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', k.key, iv);
    c.setAAD(Buffer.from(k.header, 'ascii'));
    const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return `${k.header}..${iv.toString('base64url')}.${ct.toString('base64url')}.${c.getAuthTag().toString('base64url')}`;
  }

  /** Open a value sealed by any key of the list; null when it is not one (forged, altered, unknown key). */
  open(jwe: string): string | null {
    const d1 = jwe.indexOf('.');
    if (d1 <= 0 || jwe.charCodeAt(d1 + 1) !== 46 /* '.' */) return null;
    const d3 = jwe.indexOf('.', d1 + 2);
    const d4 = d3 < 0 ? -1 : jwe.indexOf('.', d3 + 1);
    if (d3 < 0 || d4 < 0 || jwe.indexOf('.', d4 + 1) >= 0) return null;
    const header = jwe.slice(0, d1);
    const candidates = this.keysFor(header);
    if (candidates.length === 0) return null;
    let iv: Buffer, tag: Buffer, ct: Buffer;
    try {
      iv = Buffer.from(jwe.slice(d1 + 2, d3), 'base64url');
      tag = Buffer.from(jwe.slice(d4 + 1), 'base64url');
      ct = Buffer.from(jwe.slice(d3 + 1, d4), 'base64url');
    } catch {
      return null;
    }
    if (iv.length !== 12 || tag.length !== 16) return null;
    // The AAD is the header as sent (RFC 7516 §5.1 step 14).
    const aad = Buffer.from(header, 'ascii');
    for (const k of candidates) {
      try {
        const d = createDecipheriv('aes-256-gcm', k.key, iv);
        d.setAAD(aad);
        d.setAuthTag(tag);
        return Buffer.concat([d.update(ct), d.final()]).toString('utf8');
      } catch {
        // not this key
      }
    }
    return null;
  }

  /** The keys that may have sealed a value with this header: by kid, or all of them without one. */
  private keysFor(header: string): readonly SessionKey[] {
    for (const k of this.keys) if (k.header === header) return [k];
    try {
      const h = JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { alg?: unknown; enc?: unknown; kid?: unknown };
      if (h.alg !== 'dir' || h.enc !== 'A256GCM') return [];
      if (h.kid === undefined) return this.keys;
      const k = typeof h.kid === 'string' ? this.byKid.get(h.kid) : undefined;
      return k ? [k] : [];
    } catch {
      return [];
    }
  }
}

/** 32 random bytes as base64url: a session id, a state, a nonce or a PKCE verifier (RFC 7636 §4.1: 43 chars). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * The `keyFiles` a document names, read when the config is compiled; an unreadable or invalid
 * file is an error at `path[index]`. Outside the cluster (validate --ci) a file that is not
 * there is a warning and throw-away keys stand in, so the rest of the document is checked.
 * `register` receives the keys as written in their files (for the log redactor).
 */
export function compileKeyFiles(
  scope: OutsideCluster,
  v: ValidationContext,
  path: Path,
  written: readonly string[],
  resolve: (p: string) => string,
  register?: (texts: readonly string[]) => void,
): SessionKeys | undefined {
  const files = written.map(resolve);
  const missing = files.map((f, i) => missingOutsideCluster(scope, v, [...path, i], written[i]!, f));
  if (missing.some(Boolean)) return new SessionKeys(files.map(() => randomBytes(32)));
  const texts: string[] = [];
  const r = SessionKeys.fromFiles(files, texts);
  if ('error' in r) {
    v.error([...path, r.index], r.error);
    return undefined;
  }
  register?.(texts);
  return r;
}
