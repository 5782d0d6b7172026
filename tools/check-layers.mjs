#!/usr/bin/env node
// Boundary check (docs/architecture.md "Layers"): the pure layers import no I/O and read no clock,
// and no layer below the composition root picks a concrete adapter. Exits 1 listing every violation.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const IO = /from\s+['"](node:)?(dgram|fs|fs\/promises|net|http|https|http2|child_process|sqlite3|pg|dns|tls|cluster|worker_threads|multicast-dns|coap|coap-packet)['"]/;
const rules = [
  { dir: 'src/protocol', forbid: [IO, /Date\.now\(\)/, /new Date\(\)/, /from\s+['"]\.\.\/(store|service|transport|admin|discovery|cli)\//], why: 'pure codecs: no I/O, no clock, no upper layers' },
  { dir: 'src/net', forbid: [IO, /Date\.now\(\)/, /new Date\(\)/, /from\s+['"]\.\.?\//], why: 'the address normaliser is a pure leaf: no I/O, no clock, no imports, so every layer may use it' },
  { dir: 'src/policy', forbid: [IO, /Date\.now\(\)/, /new Date\(\)/, /from\s+['"]\.\.\/(store|service|transport|admin|discovery|cli|tokens)\//], why: 'pure decisions: no I/O, no clock' },
  { dir: 'src/tokens', forbid: [IO, /Date\.now\(\)/, /from\s+['"]\.\.\/(store|service|transport|admin|discovery|cli)\//], why: 'tokens take the clock as an argument' },
  { dir: 'src/service', forbid: [IO, /Date\.now\(\)/, /from\s+['"]\.\.\/store\/(sqlite|postgres)/, /from\s+['"]\.\.\/transport\//], why: 'use cases see the Store seam only; adapters are chosen in src/server.ts' },
  ...['records', 'probe', 'rogue', 'interfaces'].map((f) => ({
    dir: `src/discovery/${f}.ts`,
    forbid: [IO, /Date\.now\(\)/, /new Date\(\)/],
    why: 'pure discovery logic: no I/O, clock passed in',
  })),
  { dir: 'src/transport', forbid: [/from\s+['"]\.\.\/\.\.\/(service|policy|store|tokens|admin)\//], why: 'the transport knows nothing of provisioning' },
];

function* files(dir) {
  if (dir.endsWith('.ts')) {
    yield dir;
    return;
  }
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (p.endsWith('.ts')) yield p;
  }
}

const problems = [];
for (const r of rules) {
  for (const f of files(join(root, r.dir))) {
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/^\s*(\*|\/\/)/.test(line) || /^\s*import type /.test(line)) return;
        for (const re of r.forbid) if (re.test(line)) problems.push(`${relative(root, f)}:${i + 1}: ${line.trim()}  (${r.why})`);
      });
  }
}
if (problems.length) {
  console.error(`layer check: ${problems.length} violation(s)\n${problems.join('\n')}`);
  process.exit(1);
}
console.log('layer check: ok');
