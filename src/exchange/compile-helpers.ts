/**
 * What the compilers of the exchange kinds (TokenExchangePolicy, SecurityTokenService,
 * DelegationPolicy) share: common schema pieces, references between documents, files named in
 * a document, header names, client secrets, and the hash that identifies compiled resources.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Path } from '../config/issues.js';
import type { CompileContext, KindDocument } from '../config/kinds.js';
import { missingOutsideCluster } from '../config/outside-cluster.js';
import { list, str, type Schema, type ValidationContext } from '../config/schema.js';
import { isValidHeaderName } from '../core/headers.js';
import { readTokenFile, sharedTokenFile } from '../kubernetes/file-token.js';
import { registeredSecret } from '../observability/redact.js';

export const HTTP_URL = /^https?:\/\/[^\s/?#]+[^\s]*$/;
export const httpUrl = (): Schema<string> => str({ pattern: HTTP_URL, patternHint: 'must be an http(s) URL' });
export const strs = list(str({ nonEmpty: true }));

/** SHA-256 (base64url) over NUL-separated parts: the identity of a compiled resource in runtime.shared keys. */
export function sha256(...parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('base64url');
}

/** A string or a list of strings (`audience: a` or `audience: [a, b]`). */
export function strOrList(): Schema<string | string[]> {
  const one = str({ nonEmpty: true });
  return {
    typeName: 'string or list of strings',
    parse(v, path, ctx) {
      return Array.isArray(v) ? strs.parse(v, path, ctx) : one.parse(v, path, ctx);
    },
  };
}

export function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** A file named in a document, read now; a config error (at `path`) when it cannot be read. */
export function readFileAt(k: KindDocument, cc: CompileContext, path: Path, p: string, standIn?: () => string): { path: string; text: string } | undefined {
  const abs = cc.resolvePath(k.doc, p);
  // validate --ci: a key mounted only in the pod; compile on with a throw-away stand-in.
  if (standIn && missingOutsideCluster(cc, k.v, path, p, abs)) return { path: abs, text: standIn() };
  try {
    return { path: abs, text: readFileSync(abs, 'utf8') };
  } catch (e) {
    k.v.error(path, `cannot read file ${JSON.stringify(p)}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    return undefined;
  }
}

/** Resolve `name` (the referring document's namespace, then the root namespace) or `namespace/name`. */
export function resolveRef<T>(map: ReadonlyMap<string, T>, from: KindDocument, name: string, rootNs: string): T | undefined {
  if (name.includes('/')) return map.get(name);
  return map.get(`${from.namespace}/${name}`) ?? map.get(`${rootNs}/${name}`);
}

export function headerNameOk(v: ValidationContext, path: Path, name: string): boolean {
  if (!isValidHeaderName(name) || name.startsWith(':')) {
    v.error(path, `invalid header name ${JSON.stringify(name)} (lower-case token characters)`);
    return false;
  }
  return true;
}

/**
 * A client secret written inline (a warning) or in a file (re-read on change); undefined when
 * neither is set or the settings are wrong (reported under `base`).
 */
export function secretFn(k: KindDocument, cc: CompileContext, base: Path, inline: string | undefined, file: string | undefined): (() => string | undefined) | undefined {
  if (inline !== undefined && file !== undefined) {
    k.v.error([...base, 'clientSecret'], 'set only one of clientSecret or clientSecretFile');
    return undefined;
  }
  // Registered with the runtime's secret registry: a remote party's text that echoes it is
  // redacted before it reaches a log line.
  const key = `secret:${k.ref}:${base.join('.')}`;
  if (inline !== undefined) {
    k.v.warn([...base, 'clientSecret'], 'an inline secret is kept in the config file; prefer clientSecretFile');
    return registeredSecret(cc.runtime.secrets, key, () => inline);
  }
  if (file !== undefined) {
    const abs = cc.resolvePath(k.doc, file);
    if (missingOutsideCluster(cc, k.v, [...base, 'clientSecretFile'], file, abs)) return () => undefined;
    if (!existsSync(abs)) {
      k.v.error([...base, 'clientSecretFile'], `cannot read file ${JSON.stringify(file)}`);
      return undefined;
    }
    const src = sharedTokenFile(cc.runtime, abs);
    return registeredSecret(cc.runtime.secrets, `secret-file:${abs}`, () => readTokenFile(src));
  }
  return undefined;
}
