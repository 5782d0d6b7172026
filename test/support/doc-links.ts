/**
 * Relative-link checking for the repository's Markdown (issue 13: the repository links nothing outside
 * itself). Pure functions over file contents plus one function that reads a tree; the test in
 * `links.test.ts` runs them over every git-tracked `.md` file and over planted dead links.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** A link found in a Markdown file. */
export interface FoundLink {
  /** 1-based line number. */
  line: number;
  /** The link target as written (`docs/x.md#y`). */
  target: string;
}

/** A link that does not resolve, or a forbidden mention. */
export interface LinkProblem {
  file: string;
  line: number;
  target: string;
  why: string;
}

/**
 * Paths outside the repository that documents must never link to or name (the handover folder). Built
 * from parts so that this file does not name them itself.
 */
export const FORBIDDEN_NAMES: readonly string[] = [['..', 'shared'].join('/'), ['', 'work', 'shared'].join('/')];

/** Blank out fenced code blocks and inline code spans (links there are examples, not links). */
export function stripCode(md: string): string {
  const lines = md.split('\n');
  let fence: string | undefined;
  const out: string[] = [];
  for (const line of lines) {
    const m = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence !== undefined) {
      if (m && m[1]![0] === fence[0] && m[1]!.length >= fence.length && line.trim() === m[1]) fence = undefined;
      out.push('');
      continue;
    }
    if (m) {
      fence = m[1]!;
      out.push('');
      continue;
    }
    out.push(line.replace(/(`+)(?:(?!\1).)*?\1/g, (s) => ' '.repeat(s.length)));
  }
  return out.join('\n');
}

/**
 * The links of a Markdown document: inline `[text](target)` and `![alt](target)`, reference
 * definitions `[label]: target`, and HTML `href`/`src` attributes. Code is skipped.
 */
export function findLinks(md: string): FoundLink[] {
  const found: FoundLink[] = [];
  const lines = stripCode(md).split('\n');
  lines.forEach((line, i) => {
    const push = (t: string): void => {
      found.push({ line: i + 1, target: t.trim().replace(/^<(.*)>$/, '$1') });
    };
    // [text](target "title") — the target ends at whitespace or the closing parenthesis.
    for (const m of line.matchAll(/\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+"[^"]*")?\s*\)/g)) push(m[1]!);
    const def = /^\s{0,3}\[[^\]]+\]:\s*(\S+)/.exec(line);
    if (def) push(def[1]!);
    for (const m of line.matchAll(/\b(?:href|src)\s*=\s*"([^"]*)"/g)) push(m[1]!);
  });
  return found;
}

/** True for targets this checker does not resolve: URLs with a scheme (`https:`, `mailto:`). */
export function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target);
}

/**
 * GitHub's heading anchor: lower case, punctuation other than `-` and `_` removed, spaces to `-`;
 * inline markup (code ticks, emphasis, links) reduced to its text first.
 */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .replace(/[`*]/g, '')
    .replace(/(^|\s)_+|_+(\s|$)/g, '$1$2')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

/** Every anchor a document defines: heading slugs (with GitHub's `-1`, `-2` for repeats) and HTML ids. */
export function anchorsOf(md: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  // Headings inside fenced code (`# comment` in a shell block) are not headings: stripCode blanks
  // fenced lines, and a heading keeps its inline code, so take the original line where it survived.
  const plain = stripCode(md).split('\n');
  const original = md.split('\n');
  for (const [i, line] of original.entries()) {
    if (plain[i] === '' && line !== '') continue;
    const h = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (h) {
      const base = slug(h[1]!);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      anchors.add(n === 0 ? base : `${base}-${n}`);
    }
    for (const m of line.matchAll(/<a\s+(?:[^>]*\s)?(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
  }
  return anchors;
}

/**
 * Check the links of one Markdown file at `file` (absolute) inside `root`: every relative target names
 * an existing file or directory inside the root, every `#anchor` into a Markdown file names one of its
 * headings, and nothing names a forbidden outside path.
 */
export function checkFile(root: string, file: string, read: (p: string) => string = (p) => readFileSync(p, 'utf8')): LinkProblem[] {
  const md = read(file);
  const rel = relative(root, file);
  const problems: LinkProblem[] = [];
  md.split('\n').forEach((line, i) => {
    for (const name of FORBIDDEN_NAMES) {
      if (line.includes(name)) problems.push({ file: rel, line: i + 1, target: name, why: 'names a path outside the repository' });
    }
  });
  for (const { line, target } of findLinks(md)) {
    if (target === '' || isExternal(target)) continue;
    const hash = target.indexOf('#');
    const pathPart = decodeURI(hash < 0 ? target : target.slice(0, hash)).replace(/\?.*$/, '');
    const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1));
    const dest = pathPart === '' ? file : pathPart.startsWith('/') ? join(root, pathPart) : resolve(dirname(file), pathPart);
    const inside = relative(root, dest);
    if (inside.startsWith('..')) {
      problems.push({ file: rel, line, target, why: 'points outside the repository' });
      continue;
    }
    if (!existsSync(dest)) {
      problems.push({ file: rel, line, target, why: 'no such file' });
      continue;
    }
    if (anchor !== undefined && anchor !== '' && dest.endsWith('.md') && statSync(dest).isFile()) {
      if (!anchorsOf(read(dest)).has(anchor)) problems.push({ file: rel, line, target, why: `no heading #${anchor} in ${relative(root, dest)}` });
    }
  }
  return problems;
}

/** Format problems one per line for an assertion message. */
export function formatProblems(ps: readonly LinkProblem[]): string {
  return ps.map((p) => `${p.file}:${p.line}: ${p.target} — ${p.why}`).join('\n');
}
