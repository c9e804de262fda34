/**
 * API keys (CredentialValidator `type: APIKey`). Keys exist only as SHA-256 hashes in a
 * YAML file (`keys: [...]`) or a folder with one YAML file per key (a mounted Kubernetes
 * Secret); the key itself is shown once by `obo-authz apikey create` and never stored.
 *
 *   keys:
 *   - name: ci-bot                 # subject; [A-Za-z0-9][A-Za-z0-9._@:-]*
 *     hash: sha256:<64 hex>        # sha256 of the key's UTF-8 bytes
 *     role: deployer
 *     groups: [ci]
 *     scopes: [deploy:write]
 *     expires: "2026-01-01T00:00:00Z"
 *
 * A presented key is hashed and compared with every entry in constant time. Error
 * messages name files, entries and fields, never a value.
 */
import { randomBytes } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { bool, obj, str } from '../config/schema.js';
import type { CheckState } from '../core/state.js';
import { ABSTAIN, type CredentialValidatorMember, type ValidatorResult } from './chain.js';
import {
  applyClaimHeaders,
  checkLocations,
  constantTimeFind,
  credentialDeny,
  findCredential,
  locationsSchema,
  makeIdentity,
  reloadIntervalSchema,
  sanitizeClaimHeaders,
  sha256Bytes,
  toLocations,
  type ClaimForwarding,
  type CredentialLocation,
  type RawHeaderLocation,
} from './credential-common.js';
import type { FileParser, MountedFile, SourceFile } from '../kubernetes/mounted-file.js';
import { blockFile, localIssuer, type ValidatorTypeDef } from './validator-type.js';

export interface ApiKeyEntry {
  readonly name: string;
  readonly digest: Buffer;
  readonly role?: string;
  readonly groups: readonly string[];
  readonly scopes: readonly string[];
  /** ms since epoch; undefined = never expires. */
  readonly expiresAt?: number;
}

export interface ApiKeySet {
  readonly entries: readonly ApiKeyEntry[];
  readonly digests: readonly Buffer[];
}

export const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]{0,252}$/;
const HASH = /^sha256:[0-9a-fA-F]{64}$/;
const ENTRY_FIELDS = new Set(['name', 'hash', 'role', 'groups', 'scopes', 'expires', 'created', 'description']);
const NO_CONTROL = /^[^\u0000-\u001f\u007f]*$/;

/** RFC 3339 date-time (section 5.6) with a mandatory zone: `Z` or `±hh:mm`; `T`/`Z` in either case. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * ms since the epoch of an RFC 3339 date-time, or undefined when `s` is not one: a time
 * without a zone (Date.parse would read it as local time), a date alone, another format
 * Date.parse happens to accept, or an impossible date (`2026-02-30`, hour 24, offset +24:00).
 */
export function parseRfc3339(s: string): number | undefined {
  const m = RFC3339.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59) return undefined;
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it maps years 0..99 to 1900..1999
  t.setUTCHours(h, mi, sec, 0);
  if (t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d) return undefined; // 2026-02-30 would roll over to March
  const base = t.getTime();
  const frac = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  let offset = 0;
  if (!m[8]) {
    const oh = Number(m[10]);
    const om = Number(m[11]);
    if (oh > 23 || om > 59) return undefined;
    offset = (m[9] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  return base + frac - offset;
}

/** A new random key: `obo_` + 32 random bytes base64url (not JWT-shaped: no dots). */
export function generateApiKey(): string {
  return `obo_${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a key: `sha256:<hex>`. */
export function hashApiKey(key: string): string {
  return `sha256:${sha256Bytes(key).toString('hex')}`;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Date) return 'timestamp';
  return typeof v === 'object' ? 'mapping' : typeof v;
}

function stringList(v: unknown, where: string): { ok: true; value: string[] } | { ok: false; error: string } {
  if (v === undefined || v === null) return { ok: true, value: [] };
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '' && NO_CONTROL.test(x))) {
    return { ok: false, error: `${where}: expected a list of non-empty strings` };
  }
  return { ok: true, value: v as string[] };
}

function parseEntry(raw: unknown, where: string, defaultName?: string): { ok: true; value: ApiKeyEntry } | { ok: false; error: string } {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, error: `${where}: expected a mapping, got ${typeOf(raw)}` };
  const e = raw as Record<string, unknown>;
  for (const k of Object.keys(e)) if (!ENTRY_FIELDS.has(k)) return { ok: false, error: `${where}: unknown field ${JSON.stringify(k)} (known: ${[...ENTRY_FIELDS].join(', ')})` };
  const name = e['name'] ?? defaultName;
  if (typeof name !== 'string' || !KEY_NAME.test(name)) return { ok: false, error: `${where}.name: required; letters, digits and . _ @ : - (no /)` };
  const hash = e['hash'];
  if (typeof hash !== 'string' || !HASH.test(hash)) return { ok: false, error: `${where}.hash: must be "sha256:" followed by 64 hex digits` };
  const role = e['role'];
  if (role !== undefined && role !== null && (typeof role !== 'string' || role === '' || !NO_CONTROL.test(role))) return { ok: false, error: `${where}.role: expected a non-empty string` };
  const groups = stringList(e['groups'], `${where}.groups`);
  if (!groups.ok) return groups;
  const scopes = stringList(e['scopes'], `${where}.scopes`);
  if (!scopes.ok) return scopes;
  if (scopes.value.some((s) => /\s/.test(s))) return { ok: false, error: `${where}.scopes: a scope must not contain spaces` };
  let expiresAt: number | undefined;
  const exp = e['expires'];
  if (exp !== undefined && exp !== null) {
    const ms = typeof exp === 'string' ? parseRfc3339(exp) : undefined;
    if (ms === undefined) {
      return {
        ok: false,
        error: `${where}.expires: expected an RFC 3339 date-time with "Z" or a UTC offset, such as "2026-01-01T00:00:00Z" or "2026-01-01T01:00:00+01:00"${exp instanceof Date ? ' (a quoted string: an unquoted YAML 1.1 timestamp may have no zone)' : ''}`,
      };
    }
    expiresAt = ms;
  }
  return {
    ok: true,
    value: Object.freeze({
      name,
      digest: Buffer.from(hash.slice(7).toLowerCase(), 'hex'),
      ...(typeof role === 'string' ? { role } : {}),
      groups: Object.freeze(groups.value),
      scopes: Object.freeze(scopes.value),
      ...(expiresAt !== undefined ? { expiresAt } : {}),
    }),
  };
}

function yamlOf(f: SourceFile, label: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: parseYaml(f.content, { uniqueKeys: true }) as unknown };
  } catch (e) {
    // The parser's message may quote the offending text: report only its position.
    const pos = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    return { ok: false, error: `${label}: not valid YAML${pos ? ` (line ${pos.line}, column ${pos.col})` : ''}` };
  }
}

/** Parse a key file (`keys: [...]`) or a folder (one entry per file, name defaults to the file name). */
export const parseApiKeyFiles: FileParser<ApiKeySet> = (files, path) => {
  const entries: ApiKeyEntry[] = [];
  if (files.length === 1 && files[0]!.name === '') {
    const y = yamlOf(files[0]!, path);
    if (!y.ok) return y;
    const doc = y.value;
    if (doc === null || doc === undefined) return { ok: true, value: Object.freeze({ entries: [], digests: [] }) };
    if (typeof doc !== 'object' || Array.isArray(doc)) return { ok: false, error: `${path}: expected a mapping with a "keys" list` };
    for (const k of Object.keys(doc)) if (k !== 'keys') return { ok: false, error: `${path}: unknown field ${JSON.stringify(k)} (expected "keys")` };
    const list = (doc as Record<string, unknown>)['keys'] ?? [];
    if (!Array.isArray(list)) return { ok: false, error: `${path}: keys: expected a list` };
    for (let i = 0; i < list.length; i++) {
      const r = parseEntry(list[i], `${path}: keys[${i}]`);
      if (!r.ok) return r;
      entries.push(r.value);
    }
  } else {
    for (const f of files) {
      const label = `${path}/${f.name}`;
      const y = yamlOf(f, label);
      if (!y.ok) return y;
      const r = parseEntry(y.value, label, f.name.replace(/\.(ya?ml|json)$/i, ''));
      if (!r.ok) return r;
      entries.push(r.value);
    }
  }
  const names = new Set<string>();
  const hashes = new Set<string>();
  for (const e of entries) {
    if (names.has(e.name)) return { ok: false, error: `${path}: key name ${JSON.stringify(e.name)} is used twice` };
    names.add(e.name);
    const h = e.digest.toString('hex');
    if (hashes.has(h)) return { ok: false, error: `${path}: key ${JSON.stringify(e.name)} has the same hash as another key` };
    hashes.add(h);
  }
  return { ok: true, value: Object.freeze({ entries: Object.freeze(entries), digests: Object.freeze(entries.map((e) => e.digest)) }) };
};

export interface ApiKeyMemberOptions {
  readonly ref: string;
  readonly issuer: string;
  readonly locations: readonly CredentialLocation[];
  readonly file: MountedFile<ApiKeySet>;
  readonly forwardKey: boolean;
  readonly forwardClaims: ClaimForwarding | null;
}

/** Identity claims of an API key (documented in docs/configuration/credentials.md). */
export function apiKeyClaims(e: ApiKeyEntry): Record<string, unknown> {
  const c: Record<string, unknown> = { name: e.name };
  if (e.role !== undefined) c['role'] = e.role;
  if (e.groups.length) c['groups'] = [...e.groups];
  if (e.scopes.length) c['scope'] = [...e.scopes];
  if (e.expiresAt !== undefined) c['exp'] = Math.floor(e.expiresAt / 1000);
  return c;
}

export class ApiKeyMember implements CredentialValidatorMember {
  readonly name: string;
  readonly metricLabel: string;
  constructor(readonly o: ApiKeyMemberOptions) {
    this.name = `APIKey ${o.ref}`;
    this.metricLabel = this.name;
  }

  sanitize(state: CheckState): void {
    sanitizeClaimHeaders(state, this.o.forwardClaims);
  }

  validate(state: CheckState): ValidatorResult {
    const o = this.o;
    const found = findCredential(state, o.locations, 'opaque');
    if (!found) {
      state.trace?.add('authn', `${this.name}: no API key at ${o.locations.map((l) => l.label).join(', ')}`);
      return ABSTAIN;
    }
    const set = o.file.get();
    const hit = set ? constantTimeFind(set.digests, sha256Bytes(found.value)) : -1;
    if (hit < 0) {
      return { kind: 'reject', soft: true, deny: credentialDeny(state, 'ERR_INVALID_CREDENTIAL', `${this.name}: API key at ${found.location.label} is not a known key`, found.location, o.ref) };
    }
    const e = set!.entries[hit]!;
    if (e.expiresAt !== undefined && state.runtime.now() >= e.expiresAt) {
      // The key matched, so it certainly is ours: a hard reject with its own reason.
      const d = credentialDeny(state, 'ERR_CREDENTIAL_EXPIRED', `${this.name}: API key ${JSON.stringify(e.name)} expired at ${new Date(e.expiresAt).toISOString()}`, found.location, o.ref);
      state.trace?.add('authn', d.message);
      return { kind: 'reject', deny: d };
    }
    const id = makeIdentity({
      kind: 'api-key',
      issuer: o.issuer,
      subject: e.name,
      claims: apiKeyClaims(e),
      admittedBy: o.ref,
      location: found.location.label,
      ...(e.expiresAt !== undefined ? { expiresAt: Math.floor(e.expiresAt / 1000) } : {}),
    });
    if (!o.forwardKey) removeCredentialHeader(state, found.location);
    applyClaimHeaders(state, o.forwardClaims, id);
    state.trace?.add('authn', `${this.name}: API key ${JSON.stringify(e.name)} at ${found.location.label} accepted`);
    return { kind: 'admit', identities: [id] };
  }
}

/** Upstream never sees the credential (no token passthrough) unless the validator forwards it. */
export function removeCredentialHeader(state: CheckState, l: CredentialLocation): void {
  state.upstream.set.delete(l.name);
  state.upstream.removeHeader(l.name);
}

interface RawApiKey {
  file?: string;
  fromHeaders?: RawHeaderLocation[];
  reloadInterval?: number;
  forwardKey?: boolean;
}

/** CredentialValidator `type: APIKey` (`spec.apiKey`). */
export const API_KEY_TYPE: ValidatorTypeDef<RawApiKey> = {
  block: 'apiKey',
  schema: obj<RawApiKey>({ file: str({ nonEmpty: true }), fromHeaders: locationsSchema, reloadInterval: reloadIntervalSchema(), forwardKey: bool() }, { required: ['file'] }),
  defaultIssuer: (k) => localIssuer('apikey', k),
  compile(x) {
    const { k, block: a, ref, issuer, forwardClaims, at } = x;
    checkLocations(k, at(), a.fromHeaders);
    const locations = toLocations(a.fromHeaders);
    // The files hold hashes, never keys; the hashes are still kept out of logs.
    const file = blockFile(x, 'api-keys', parseApiKeyFiles, (files) => files.flatMap((f) => [...f.content.matchAll(/sha256:([0-9a-f]{64})/gi)].flatMap((m) => [m[0], m[1]!])));
    const member = new ApiKeyMember({ ref, issuer, locations, file, forwardKey: a.forwardKey ?? false, forwardClaims });
    return { member, locations, opaqueHeaders: locations.map((l) => l.name), takesJwt: false };
  },
};
