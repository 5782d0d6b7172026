/** Corpus and crash folders on disk. */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { Finding } from './engine.ts';
import { ROOT } from './targets/fixtures.ts';

export { ROOT };

/** The committed corpus of a target. */
export const committedDir = (target: string): string => join(ROOT, 'fixtures', 'fuzz', target);
/** The default working folder of a target (not committed). */
export const workDir = (target: string): string => join(ROOT, '.fuzz', target);

export const sha1 = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex');

/** Every input in `dir` (none when it does not exist), in name order. */
export function readCorpus(dir: string): Buffer[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.') && !f.endsWith('.txt') && !f.endsWith('.md'))
    .sort()
    .map((f) => readFileSync(join(dir, f)));
}

/** Store `input` in `dir` under its hash; returns the path. */
export function saveInput(dir: string, input: Uint8Array, prefix = ''): string {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, `${prefix}${sha1(input).slice(0, 16)}`);
  if (!existsSync(p)) writeFileSync(p, input);
  return p;
}

/** Write a finding as `<kind>-<hash>` plus a `.txt` with the error and the command that reproduces it. */
export function saveFinding(dir: string, target: string, f: Finding): string {
  const p = saveInput(dir, f.input, `${f.kind}-`);
  const rel = relative(ROOT, p);
  writeFileSync(
    `${p}.txt`,
    [`target: ${target}`, `kind: ${f.kind}`, `time: ${f.ms.toFixed(1)} ms`, `input (${f.input.length} bytes, hex): ${Buffer.from(f.input).toString('hex')}`, '', f.message, f.stack, '', `reproduce: npm run fuzz -- ${target} --reproduce ${rel}`, ''].join('\n'),
  );
  return p;
}
