/**
 * A bearer token read from a file (a projected Kubernetes service-account token, the token
 * we call the TokenReview API with): a MountedFile whose value is the trimmed content, re-read
 * at most once a second on use. An empty file holds no token ('').
 */
import type { Runtime } from '../core/runtime.js';
import { MountedFile, sharedMountedFile, type FileParser } from './mounted-file.js';

/** How often a token file is re-read on use (Kubernetes rotates projected tokens by a symlink swap). */
export const TOKEN_RECHECK_MS = 1000;

const TOKEN_FILE = { what: 'token', intervalMs: TOKEN_RECHECK_MS, background: false } as const;

export const parseTokenFile: FileParser<string> = (files, path) => {
  const f = files.length === 1 ? files[0]! : undefined;
  if (!f || f.name !== '') return { ok: false, error: `${path} is a folder, not a token file` };
  return { ok: true, value: f.content.trim() };
};

export type TokenFile = MountedFile<string>;

/** A token file owned by its caller (disposed with it). */
export function tokenFile(runtime: Runtime, path: string): TokenFile {
  return new MountedFile(path, parseTokenFile, runtime, TOKEN_FILE);
}

/**
 * The token file for `path` shared across config reloads (runtime.shared). A file that does
 * not exist yet is not an error here: it yields no token until it appears.
 */
export function sharedTokenFile(runtime: Runtime, path: string): TokenFile {
  return sharedMountedFile(runtime, path, parseTokenFile, TOKEN_FILE).file;
}

/** The current token, or undefined when the file is missing, unreadable or empty. */
export function readTokenFile(f: TokenFile): string | undefined {
  return f.get() || undefined;
}
