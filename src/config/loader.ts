/**
 * Reads config files (a YAML file or a folder of *.yaml / *.yml, multi-document) into
 * LoadedDocuments that remember where every value came from, so any later validation
 * error can name file, line, column, document and field.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { Composer, LineCounter, Parser, isMap, isNode, isScalar, type Document } from 'yaml';
import type { ConfigIssue, Path } from './issues.js';
import { formatPath } from './issues.js';
import { countNodes, countRules, DEFAULT_LIMITS, limitIssue, type ConfigLimits } from './limits.js';

export interface LoadedDocument {
  /** File path as given / discovered (relative to cwd when possible). */
  readonly file: string;
  /** 1-based position of the document within its file. */
  readonly index: number;
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** metadata.namespace as written ('' when absent; defaultNamespace is applied at compile). */
  readonly namespace: string;
  /** Plain JS value of the whole document. */
  readonly value: Record<string, unknown>;
  /**
   * Locate a field path in the source; falls back to the nearest existing parent. With
   * `atKey`, point at the mapping key rather than its value (unknown-field errors).
   */
  locate(path: Path, atKey?: boolean): { line: number; col: number };
}

export interface LoadResult {
  readonly documents: LoadedDocument[];
  readonly issues: ConfigIssue[];
  readonly files: string[];
}

function displayPath(p: string): string {
  if (!isAbsolute(p)) return p;
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

/** Expand the --config arguments into the list of YAML files, sorted within each folder. */
export function listConfigFiles(paths: readonly string[]): { files: string[]; issues: ConfigIssue[] } {
  const files: string[] = [];
  const issues: ConfigIssue[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch (e) {
      issues.push(fileIssue(p, `cannot read config path: ${(e as NodeJS.ErrnoException).code ?? String(e)}`));
      continue;
    }
    if (st.isDirectory()) {
      let entries: string[];
      try {
        entries = readdirSync(p);
      } catch (e) {
        // the folder vanished or became unreadable between stat and readdir (a reload race)
        issues.push(fileIssue(p, `cannot list config folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`));
        continue;
      }
      const names = entries.filter((n) => /\.ya?ml$/i.test(n) && !n.startsWith('.')).sort();
      for (const n of names) files.push(join(p, n));
    } else {
      files.push(p);
    }
  }
  return { files, issues };
}

function fileIssue(file: string, message: string, line = 1, col = 1, document = 0): ConfigIssue {
  return { severity: 'error', file: displayPath(file), line, col, document, kind: '', name: '', field: '(file)', message };
}

/**
 * Read and parse every config file. A file with no documents is an error (an empty file is
 * what an editor or `>` leaves while it rewrites one in place, and loading it would drop every
 * policy it held); so is a config over `limits` (config/limits.ts).
 */
export function loadConfigFiles(paths: readonly string[], limits: ConfigLimits = DEFAULT_LIMITS): LoadResult {
  const { files, issues } = listConfigFiles(paths);
  const documents: LoadedDocument[] = [];
  let bytes = 0;
  let rules = 0;
  for (const f of files) {
    let text: string;
    try {
      const size = statSync(f).size;
      if (bytes + size > limits.maxTotalBytes) {
        issues.push(limitIssue(displayPath(f), 0, '', '', `config files are larger than ${limits.maxTotalBytes} bytes together (limit)`));
        break;
      }
      text = readFileSync(f, 'utf8');
      bytes += Buffer.byteLength(text);
    } catch (e) {
      issues.push(fileIssue(f, `cannot read file: ${(e as NodeJS.ErrnoException).code ?? String(e)}`));
      continue;
    }
    const r = parseYamlText(text, displayPath(f), limits.maxDocuments - documents.length);
    // A file with no document at all (empty, only comments or `---`) is a mistake: a
    // truncated ConfigMap key, an editor that saved nothing, a file being rewritten in place
    // (loading it would drop every policy it held), not "no policies".
    if (r.documents.length === 0 && r.issues.length === 0) {
      issues.push(fileIssue(f, 'the file holds no YAML document (it is empty or only comments); write config files whole, by atomic rename'));
    }
    for (const d of r.documents) {
      // A document over a limit is reported and left out: compiling it is the work the limit bounds.
      const nodes = countNodes(d.value, limits.maxNodesPerDocument);
      const n = countRules(d.value);
      rules += n;
      if (nodes > limits.maxNodesPerDocument) {
        r.issues.push(limitIssue(d.file, d.index, d.kind, d.name, `the document has more than ${limits.maxNodesPerDocument} values (limit)`));
      } else if (n > limits.maxRulesPerDocument) {
        r.issues.push(limitIssue(d.file, d.index, d.kind, d.name, `the document has ${n} rules, more than ${limits.maxRulesPerDocument} (limit)`));
      } else if (rules > limits.maxRules) {
        if (rules - n <= limits.maxRules) r.issues.push(limitIssue(d.file, d.index, d.kind, d.name, `the config has more than ${limits.maxRules} rules together (limit)`));
      } else {
        documents.push(d);
      }
    }
    issues.push(...r.issues);
    if (r.truncated) {
      issues.unshift(limitIssue(displayPath(f), 0, '', '', `the config has more than ${limits.maxDocuments} documents (limit)`));
      break;
    }
  }
  return { documents, issues, files };
}

/** Parse one YAML text (possibly multi-document). Exposed for tests and `check --request`. */
export function parseYamlText(
  text: string,
  file: string,
  maxDocuments = Infinity,
): { documents: LoadedDocument[]; issues: ConfigIssue[]; truncated?: boolean } {
  const lc = new LineCounter();
  const documents: LoadedDocument[] = [];
  const issues: ConfigIssue[] = [];
  // Documents are composed one at a time, so a file of 100,000 empty documents stops at the
  // limit instead of being parsed whole first.
  const composer = new Composer({ prettyErrors: false, uniqueKeys: true });
  const parser = new Parser(lc.addNewLine);
  const docs: Document.Parsed[] = [];
  let truncated = false;
  for (const d of composer.compose(parser.parse(text))) {
    if (docs.length >= maxDocuments) {
      truncated = true;
      break;
    }
    docs.push(d as Document.Parsed);
  }
  docs.forEach((doc: Document.Parsed, i: number) => {
    const index = i + 1;
    // Name the document in messages even when it does not parse cleanly.
    const scalarAt = (path: string[]): string => {
      try {
        const v = doc.getIn(path);
        return typeof v === 'string' ? v : '';
      } catch {
        return '';
      }
    };
    const docKind = scalarAt(['kind']);
    const docName = scalarAt(['metadata', 'name']);
    const syntaxIssue = (line: number, col: number, message: string): ConfigIssue => ({
      severity: 'error',
      file,
      line,
      col,
      document: index,
      kind: docKind,
      name: docName,
      field: '(syntax)',
      message,
    });
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        const pos = err.linePos?.[0] ?? lc.linePos(err.pos[0]);
        issues.push(syntaxIssue(pos.line, pos.col, `YAML syntax error: ${err.message.split('\n')[0]}`));
      }
      return;
    }
    // An empty document (`---` with nothing after it, a trailing `---`) holds no config.
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null && !doc.contents.source)) return;
    let value: unknown;
    try {
      // The alias cap guards against "billion laughs" expansion; it is generous enough for
      // policies that reuse anchors a lot.
      value = doc.toJS({ maxAliasCount: 10_000 }) as unknown;
    } catch (e) {
      const r = doc.contents?.range;
      const pos = r ? lc.linePos(r[0]) : { line: 1, col: 1 };
      issues.push(syntaxIssue(pos.line, pos.col, `cannot expand document: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`));
      return;
    }
    const locate = (path: Path, atKey = false) => {
      if (atKey && path.length > 0) {
        const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1) as (string | number)[], true);
        if (isMap(parent)) {
          const last = path[path.length - 1];
          const pair = parent.items.find((it) => isScalar(it.key) && it.key.value === last);
          if (pair && isNode(pair.key) && pair.key.range) return lc.linePos(pair.key.range[0]);
        }
      }
      for (let n = path.length; n >= 0; n--) {
        const node = doc.getIn(path.slice(0, n) as (string | number)[], true);
        if (isNode(node) && node.range) return lc.linePos(node.range[0]);
        // for a missing key, point at the parent collection's pair key if any
      }
      const r = doc.contents?.range;
      return r ? lc.linePos(r[0]) : { line: 1, col: 1 };
    };
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      const pos = locate([]);
      issues.push({
        severity: 'error',
        file,
        line: pos.line,
        col: pos.col,
        document: index,
        kind: '',
        name: '',
        field: '(document)',
        message: 'a config document must be a mapping with apiVersion, kind, metadata and spec',
      });
      return;
    }
    const v = value as Record<string, unknown>;
    const meta = (v['metadata'] && typeof v['metadata'] === 'object' ? v['metadata'] : {}) as Record<string, unknown>;
    documents.push({
      file,
      index,
      apiVersion: typeof v['apiVersion'] === 'string' ? v['apiVersion'] : '',
      kind: typeof v['kind'] === 'string' ? v['kind'] : '',
      name: typeof meta['name'] === 'string' ? meta['name'] : '',
      namespace: typeof meta['namespace'] === 'string' ? meta['namespace'] : '',
      value: v,
      locate,
    });
  });
  return truncated ? { documents, issues, truncated } : { documents, issues };
}

/** Build an issue located at `path` inside `doc`. */
export function issueAt(
  doc: LoadedDocument,
  path: Path,
  message: string,
  severity: 'error' | 'warning' = 'error',
  atKey = false,
): ConfigIssue {
  const pos = doc.locate(path, atKey);
  return {
    severity,
    file: doc.file,
    line: pos.line,
    col: pos.col,
    document: doc.index,
    kind: doc.kind,
    name: doc.name,
    field: formatPath(path),
    message,
  };
}
