/**
 * String and path matchers with Istio's semantics, compiled once per policy value.
 *
 * Istio turns every string value of a rule into an Envoy StringMatcher
 * (pilot/pkg/security/authz/matcher/string.go, header.go):
 *   "*"     -> regex `.+` (non-empty) — or `present_match` for headers, hosts and methods
 *   "*abc"  -> suffix "abc"        "abc*" -> prefix "abc"        otherwise exact.
 * `principals` prepend `spiffe://` (a leading `*` becomes `spiffe://.*abc`). `hosts` ignore
 * case. Paths containing `{*}` / `{**}` are URI templates (Envoy uri_template matcher).
 *
 * Matching never allocates: values are compared in place, and `testRange` lets the claims
 * matcher compare the space-separated tokens of a `scope` string without splitting it.
 *
 * Besides Istio's forms, `compileGlob` compiles our own kinds' globs (DelegationPolicy actors,
 * subjects and audiences; the token endpoint's client audiences), where `*` may stand
 * anywhere and more than once: `system:serviceaccount:*:planner`, `mcp-*-read`.
 */

export const enum Kind {
  Exact = 0,
  Prefix = 1,
  Suffix = 2,
  /** `.+`: any non-empty value. */
  NonEmpty = 3,
  /** Envoy present_match: the attribute exists (even if empty). */
  Present = 4,
  /** Fixed prefix + `.*` + suffix (principals written as `*suffix`). */
  PrefixSuffix = 5,
  /** Glob with `*` in several places: prefix `a`, the middle literals in order, suffix `b`. */
  Glob = 6,
}

const NO_PARTS: readonly string[] = Object.freeze([]);

export class StringMatch {
  constructor(
    readonly kind: Kind,
    /** exact/prefix value, or the fixed prefix for PrefixSuffix. */
    readonly a: string,
    /** suffix value (Suffix, PrefixSuffix). */
    readonly b: string,
    /** The value as written in the policy (for --explain). */
    readonly source: string,
    /** Glob: the literals between the first and the last `*`, matched left to right. */
    readonly parts: readonly string[] = NO_PARTS,
  ) {
    let n = a.length + b.length;
    for (const p of parts) n += p.length;
    this.minLength = n;
  }

  /** Glob: the shortest value that can match (prefix, middle literals and suffix never overlap). */
  private readonly minLength: number;

  /** Match `v` (undefined = attribute absent). */
  test(v: string | undefined): boolean {
    if (v === undefined) return false;
    switch (this.kind) {
      case Kind.Exact:
        return v === this.a;
      case Kind.Prefix:
        return v.startsWith(this.a);
      case Kind.Suffix:
        return v.endsWith(this.b);
      case Kind.NonEmpty:
        return v.length > 0;
      case Kind.Present:
        return true;
      case Kind.PrefixSuffix:
        return v.length >= this.a.length + this.b.length && v.startsWith(this.a) && v.endsWith(this.b);
      case Kind.Glob:
        return this.glob(v, 0, v.length);
    }
  }

  /** Match the substring s[start, end) without creating it. */
  testRange(s: string, start: number, end: number): boolean {
    const n = end - start;
    switch (this.kind) {
      case Kind.Exact:
        return n === this.a.length && s.startsWith(this.a, start);
      case Kind.Prefix:
        return n >= this.a.length && s.startsWith(this.a, start);
      case Kind.Suffix:
        return n >= this.b.length && s.endsWith(this.b, end);
      case Kind.NonEmpty:
        return n > 0;
      case Kind.Present:
        return true;
      case Kind.PrefixSuffix:
        return n >= this.a.length + this.b.length && s.startsWith(this.a, start) && s.endsWith(this.b, end);
      case Kind.Glob:
        return this.glob(s, start, end);
    }
  }

  /**
   * s[start, end) against prefix `a`, the middle literals, suffix `b`. Taking each middle
   * literal at its leftmost place after the previous one is enough: a later place never
   * leaves more room for the rest.
   */
  private glob(s: string, start: number, end: number): boolean {
    if (end - start < this.minLength || !s.startsWith(this.a, start) || !s.endsWith(this.b, end)) return false;
    let pos = start + this.a.length;
    const stop = end - this.b.length;
    const parts = this.parts;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      const at = s.indexOf(p, pos);
      if (at < 0 || at + p.length > stop) return false;
      pos = at + p.length;
    }
    return true;
  }
}

export interface StringOptions {
  /** What a lone `*` means: non-empty (StringMatcher `.+`) or present (HeaderMatcher). */
  readonly star: 'nonEmpty' | 'present';
  /** Compare lower-cased (hosts); the request value must be lower-cased by the caller. */
  readonly ignoreCase?: boolean;
  /** Fixed prefix added to the value (principals: `spiffe://`); ignored for `*`. */
  readonly prefix?: string;
}

/** Compile one policy value (Istio StringMatcherWithPrefix / HeaderMatcher / HostMatcher). */
export function compileString(value: string, opts: StringOptions): StringMatch {
  const v = opts.ignoreCase ? value.toLowerCase() : value;
  const p = opts.prefix ?? '';
  if (v === '*') return new StringMatch(opts.star === 'present' ? Kind.Present : Kind.NonEmpty, '', '', value);
  if (v.startsWith('*')) {
    const suffix = v.slice(1);
    return p ? new StringMatch(Kind.PrefixSuffix, p, suffix, value) : new StringMatch(Kind.Suffix, '', suffix, value);
  }
  if (v.endsWith('*')) return new StringMatch(Kind.Prefix, p + v.slice(0, -1), '', value);
  return new StringMatch(Kind.Exact, p + v, '', value);
}

/**
 * A glob of our own kinds: `*` stands for any run of characters (none included) wherever it
 * appears, everything else is literal; `*` alone means any non-empty value (as in Istio).
 * One `*` compiles to Istio's forms (prefix, suffix, prefix + suffix), more to Kind.Glob.
 */
export function compileGlob(pattern: string): StringMatch {
  if (pattern === '*') return new StringMatch(Kind.NonEmpty, '', '', pattern);
  const lits = pattern.split('*');
  if (lits.length === 1) return new StringMatch(Kind.Exact, pattern, '', pattern);
  const a = lits[0]!;
  const b = lits[lits.length - 1]!;
  if (lits.length === 2) {
    if (a === '') return new StringMatch(Kind.Suffix, '', b, pattern);
    if (b === '') return new StringMatch(Kind.Prefix, a, '', pattern);
    return new StringMatch(Kind.PrefixSuffix, a, b, pattern);
  }
  // `**` and empty middle literals add nothing.
  return new StringMatch(Kind.Glob, a, b, pattern, Object.freeze(lits.slice(1, -1).filter((p) => p !== '')));
}

/**
 * A list of values OR'ed together. Exact values go into a Set, so a long list of exact
 * hosts or methods costs one hash lookup.
 */
export class StringSet {
  private readonly exact: Set<string> | null;
  private readonly others: readonly StringMatch[];
  readonly sources: readonly string[];
  readonly hasPresent: boolean;
  readonly matchers: readonly StringMatch[];

  constructor(values: readonly string[], opts: StringOptions, prebuilt?: readonly StringMatch[]) {
    const ms = prebuilt ?? values.map((v) => compileString(v, opts));
    this.matchers = ms;
    const exact = ms.filter((m) => m.kind === Kind.Exact);
    this.exact = exact.length > 1 ? new Set(exact.map((m) => m.a)) : null;
    this.others = this.exact ? ms.filter((m) => m.kind !== Kind.Exact) : ms;
    this.sources = values;
    this.hasPresent = ms.some((m) => m.kind === Kind.Present);
  }

  test(v: string | undefined): boolean {
    if (v === undefined) return false;
    if (this.exact !== null && this.exact.has(v)) return true;
    const o = this.others;
    for (let i = 0; i < o.length; i++) if (o[i]!.test(v)) return true;
    return false;
  }

  testRange(s: string, start: number, end: number): boolean {
    const ms = this.matchers;
    for (let i = 0; i < ms.length; i++) if (ms[i]!.testRange(s, start, end)) return true;
    return false;
  }
}

/** A list of globs (compileGlob) OR'ed together. */
export function globSet(patterns: readonly string[]): StringSet {
  return new StringSet(patterns, { star: 'nonEmpty' }, patterns.map(compileGlob));
}

// ---------------------------------------------------------------------------------------
// Path templates: `{*}` = one non-empty segment, `{**}` = any run of segment characters and
// `/` (Istio replaces them with Envoy uri_template `*` / `**`). Envoy's segment character
// class is RFC 3986 pchar without `*` (and without `/` for `*`); Istio validates literals
// against the same class plus `=`, which we accept in wildcards too.
// ---------------------------------------------------------------------------------------

export const MATCH_ONE = '{*}';
export const MATCH_ANY = '{**}';

const LITERAL_RE = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/;

const LIT_TABLE = (() => {
  const t = new Uint8Array(128);
  const chars = "-._~%!$&'()+,;:@=";
  for (let c = 48; c <= 57; c++) t[c] = 1;
  for (let c = 65; c <= 90; c++) t[c] = 1;
  for (let c = 97; c <= 122; c++) t[c] = 1;
  for (const ch of chars) t[ch.charCodeAt(0)] = 1;
  return t;
})();

function isLit(c: number): boolean {
  return c < 128 && LIT_TABLE[c] === 1;
}

export function containsPathTemplate(p: string): boolean {
  return p.includes(MATCH_ONE) || p.includes(MATCH_ANY);
}

/**
 * Istio's CheckValidPathTemplate (pkg/config/security): `{`/`}` only as `{*}`/`{**}`, no
 * operator after `{**}`, and in template paths every other segment a valid literal. We
 * also require a template to start with `/` (Envoy rejects it otherwise). Returns an error
 * message or null.
 */
export function checkPathValue(path: string): string | null {
  const isTemplate = containsPathTemplate(path);
  if (isTemplate && !path.startsWith('/')) return `invalid path template ${JSON.stringify(path)}: must start with "/"`;
  const trimmed = path.replace(/^\/+/, '').replace(/\/+$/, '');
  let seenAny = false;
  for (const seg of trimmed.split('/')) {
    if (seg === MATCH_ONE || seg === MATCH_ANY) {
      if (seenAny) return `invalid path template ${JSON.stringify(path)}: {**} must be the last operator`;
      if (seg === MATCH_ANY) seenAny = true;
      continue;
    }
    if (seg.includes('{') || seg.includes('}')) {
      return `invalid path ${JSON.stringify(path)}: contains '{' or '}' beyond a supported path template ({*} or {**} as a whole segment)`;
    }
    if (isTemplate && !LITERAL_RE.test(seg)) {
      return `invalid path template ${JSON.stringify(path)}: segment ${JSON.stringify(seg)} is not a valid literal (RFC 3986 pchar)`;
    }
  }
  return null;
}

const SEG_ONE = -1;
const SEG_ANY = -2;

/** A compiled path template; matches the whole path (Envoy RE2::FullMatch). */
export class PathTemplate {
  /** Literal segments as strings; operators as SEG_ONE / SEG_ANY. */
  private readonly segs: readonly (string | number)[];
  /** Index of `{**}` in segs, or -1. */
  private readonly anyAt: number;
  /** For `{**}`: the fixed text that must follow it ('/lit/lit' or ''). */
  private readonly anyTail: string;

  constructor(readonly source: string) {
    // Envoy parseURLPatternSyntax: consume the leading '/', split on '/', a single trailing
    // '/' becomes an empty literal segment.
    const body = source.slice(1);
    const parts = body.split('/');
    this.segs = parts.map((p) => (p === MATCH_ONE ? SEG_ONE : p === MATCH_ANY ? SEG_ANY : p));
    this.anyAt = this.segs.indexOf(SEG_ANY);
    this.anyTail = this.anyAt >= 0 ? this.segs.slice(this.anyAt + 1).map((s) => `/${s as string}`).join('') : '';
  }

  test(path: string): boolean {
    if (path.length === 0 || path.charCodeAt(0) !== 47) return false;
    let pos = 1;
    const segs = this.segs;
    for (let i = 0; i < segs.length; i++) {
      if (i > 0) {
        if (pos >= path.length || path.charCodeAt(pos) !== 47) return false;
        pos++;
      }
      const s = segs[i]!;
      if (s === SEG_ANY) {
        // Everything up to the fixed tail must be segment characters or '/'.
        const tailStart = path.length - this.anyTail.length;
        if (tailStart < pos || !path.endsWith(this.anyTail)) return false;
        for (let k = pos; k < tailStart; k++) {
          const c = path.charCodeAt(k);
          if (c !== 47 && !isLit(c)) return false;
        }
        return true;
      }
      if (s === SEG_ONE) {
        const start = pos;
        while (pos < path.length && isLit(path.charCodeAt(pos))) pos++;
        if (pos === start) return false;
      } else {
        const lit = s as string;
        if (!path.startsWith(lit, pos)) return false;
        pos += lit.length;
      }
    }
    return pos === path.length;
  }
}

/** `paths` / `notPaths`: string values (with `*` = non-empty) and templates, OR'ed. */
export class PathSet {
  private readonly strings: StringSet | null;
  private readonly templates: readonly PathTemplate[];
  constructor(readonly sources: readonly string[]) {
    const plain = sources.filter((p) => !containsPathTemplate(p));
    this.strings = plain.length ? new StringSet(plain, { star: 'nonEmpty' }) : null;
    this.templates = sources.filter(containsPathTemplate).map((p) => new PathTemplate(p));
  }
  test(path: string | undefined): boolean {
    if (path === undefined) return false;
    if (this.strings !== null && this.strings.test(path)) return true;
    const t = this.templates;
    for (let i = 0; i < t.length; i++) if (t[i]!.test(path)) return true;
    return false;
  }
}
