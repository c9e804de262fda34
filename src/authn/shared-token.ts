/**
 * A shared token (CredentialValidator `type: SharedToken`): one secret read from a file
 * (for example a mounted Kubernetes Secret key), re-read within `reloadInterval` (at most
 * 30 s) of a change, compared in constant time (SHA-256 of both sides, timingSafeEqual).
 * The identity is static, from the validator's config.
 */
import { bool, list, obj, str } from '../config/schema.js';
import type { CheckState } from '../core/state.js';
import { removeCredentialHeader } from './api-keys.js';
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
import type { FileParser, MountedFile } from '../kubernetes/mounted-file.js';
import { blockFile, localIssuer, type ValidatorTypeDef } from './validator-type.js';

export interface SharedTokenValue {
  readonly digests: readonly Buffer[];
}

/** The file holds the token; surrounding whitespace and a trailing newline are ignored. */
export const parseSharedTokenFile: FileParser<SharedTokenValue> = (files, path) => {
  if (files.length !== 1 || files[0]!.name !== '') return { ok: false, error: `${path}: expected a file, not a folder` };
  const t = files[0]!.content.trim();
  if (t === '') return { ok: false, error: `${path}: the token file is empty` };
  if (/[\r\n]/.test(t)) return { ok: false, error: `${path}: the token must be a single line` };
  if (t.length < 16) return { ok: false, error: `${path}: the token is shorter than 16 characters` };
  return { ok: true, value: Object.freeze({ digests: Object.freeze([sha256Bytes(t)]) }) };
};

export interface SharedTokenMemberOptions {
  readonly ref: string;
  readonly issuer: string;
  readonly subject: string;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly locations: readonly CredentialLocation[];
  readonly file: MountedFile<SharedTokenValue>;
  readonly forwardToken: boolean;
  readonly forwardClaims: ClaimForwarding | null;
}

export class SharedTokenMember implements CredentialValidatorMember {
  readonly name: string;
  readonly metricLabel: string;
  constructor(readonly o: SharedTokenMemberOptions) {
    this.name = `SharedToken ${o.ref}`;
    this.metricLabel = this.name;
  }

  sanitize(state: CheckState): void {
    sanitizeClaimHeaders(state, this.o.forwardClaims);
  }

  validate(state: CheckState): ValidatorResult {
    const o = this.o;
    const found = findCredential(state, o.locations, 'opaque');
    if (!found) {
      state.trace?.add('authn', `${this.name}: no token at ${o.locations.map((l) => l.label).join(', ')}`);
      return ABSTAIN;
    }
    const v = o.file.get();
    if (!v || constantTimeFind(v.digests, sha256Bytes(found.value)) < 0) {
      return { kind: 'reject', soft: true, deny: credentialDeny(state, 'ERR_INVALID_CREDENTIAL', `${this.name}: token at ${found.location.label} does not match`, found.location, o.ref) };
    }
    const id = makeIdentity({ kind: 'shared-token', issuer: o.issuer, subject: o.subject, claims: { ...o.claims }, admittedBy: o.ref, location: found.location.label });
    if (!o.forwardToken) removeCredentialHeader(state, found.location);
    applyClaimHeaders(state, o.forwardClaims, id);
    state.trace?.add('authn', `${this.name}: token at ${found.location.label} accepted`);
    return { kind: 'admit', identities: [id] };
  }
}

interface RawSharedToken {
  file?: string;
  fromHeaders?: RawHeaderLocation[];
  reloadInterval?: number;
  forwardToken?: boolean;
  subject?: string;
  role?: string;
  groups?: string[];
  scopes?: string[];
}

/** CredentialValidator `type: SharedToken` (`spec.sharedToken`): the identity is static, from here. */
export const SHARED_TOKEN_TYPE: ValidatorTypeDef<RawSharedToken> = {
  block: 'sharedToken',
  schema: obj<RawSharedToken>(
    {
      file: str({ nonEmpty: true }),
      fromHeaders: locationsSchema,
      reloadInterval: reloadIntervalSchema(),
      forwardToken: bool(),
      subject: str({ nonEmpty: true, pattern: /^[^/\s]+$/, patternHint: 'must not contain "/" or spaces' }),
      role: str({ nonEmpty: true }),
      groups: list(str({ nonEmpty: true })),
      scopes: list(str({ nonEmpty: true, pattern: /^\S+$/, patternHint: 'a scope has no spaces' })),
    },
    { required: ['file'] },
  ),
  defaultIssuer: (k) => localIssuer('sharedtoken', k),
  compile(x) {
    const { k, block: s, ref, issuer, forwardClaims, at } = x;
    checkLocations(k, at(), s.fromHeaders);
    const locations = toLocations(s.fromHeaders);
    // The token is registered with the secret registry: redacted wherever it would appear in a log.
    const file = blockFile(x, 'shared-token', parseSharedTokenFile, (files) => (files.length === 1 ? [files[0]!.content.trim()] : []));
    const claims: Record<string, unknown> = {};
    if (s.role) claims['role'] = s.role;
    if (s.groups?.length) claims['groups'] = [...s.groups];
    if (s.scopes?.length) claims['scope'] = [...s.scopes];
    const member = new SharedTokenMember({ ref, issuer, subject: s.subject ?? k.name, claims, locations, file, forwardToken: s.forwardToken ?? false, forwardClaims });
    return { member, locations, opaqueHeaders: locations.map((l) => l.name), takesJwt: false };
  },
};
