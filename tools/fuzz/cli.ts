/**
 * `npm run fuzz -- <target|all> [options]`: coverage-guided fuzzing of idprov's parsers (docs/fuzzing.md).
 *
 *   --time S          run for S seconds (default 60; per target with `all`)
 *   --runs N          stop after N inputs
 *   --seed N          PRNG seed (default: from the clock; printed)
 *   --corpus DIR      working corpus: read and extended (default .fuzz/<target>/corpus)
 *   --crashes DIR     where findings go (default .fuzz/<target>/crashes)
 *   --slow-ms MS      an input slower than this is a finding (default 1000)
 *   --hang-ms MS      an input still running after this is a hang: saved, worker restarted (default 10000)
 *   --no-coverage     blind havoc (to compare)
 *   --reproduce FILE  run one input through the target's oracle and print what happens
 *   --init-corpus     (re)write fixtures/fuzz/<target>/ from the seeds derived from fixtures/
 *   --merge DIR       add the inputs of DIR that reach new coverage to fixtures/fuzz/<target>/
 *   --list            list the targets
 */
import { readFileSync, rmSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Engine, runOne } from './engine.ts';
import { committedDir, readCorpus, saveFinding, saveInput, workDir } from './files.ts';
import { TARGETS } from './targets/index.ts';
import type { WorkerJob } from './worker.ts';

interface Args {
  targets: string[];
  time: number;
  runs: number;
  seed: number;
  corpus?: string;
  crashes?: string;
  slowMs: number;
  hangMs: number;
  coverage: boolean;
  reproduce?: string;
  initCorpus: boolean;
  merge?: string;
  list: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { targets: [], time: 60, runs: Infinity, seed: Date.now() % 2 ** 31, slowMs: 1000, hangMs: 10_000, coverage: true, initCorpus: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--time') a.time = Number(next());
    else if (k === '--runs') a.runs = Number(next());
    else if (k === '--seed') a.seed = Number(next());
    else if (k === '--corpus') a.corpus = next();
    else if (k === '--crashes') a.crashes = next();
    else if (k === '--slow-ms') a.slowMs = Number(next());
    else if (k === '--hang-ms') a.hangMs = Number(next());
    else if (k === '--no-coverage') a.coverage = false;
    else if (k === '--reproduce') a.reproduce = next();
    else if (k === '--init-corpus') a.initCorpus = true;
    else if (k === '--merge') a.merge = next();
    else if (k === '--list') a.list = true;
    else if (k.startsWith('--')) throw new Error(`unknown option ${k}`);
    else a.targets.push(k);
  }
  if (a.targets.includes('all')) a.targets = [...TARGETS.keys()];
  for (const t of a.targets) if (!TARGETS.has(t)) throw new Error(`unknown target ${t} (try --list)`);
  return a;
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en');

/** Fuzz one target in a worker for `a.time` seconds, restarting it after a hang. */
async function fuzz(name: string, a: Args): Promise<{ execs: number; findings: number }> {
  const saveDir = a.corpus ?? `${workDir(name)}/corpus`;
  const crashDir = a.crashes ?? `${workDir(name)}/crashes`;
  const until = Date.now() + a.time * 1000;
  let execs = 0;
  let findings = 0;
  let seed = a.seed;
  console.log(`fuzz ${name}: ${TARGETS.get(name)!.about}`);
  console.log(`  seed ${seed}, corpus ${committedDir(name)} + ${saveDir}, findings to ${crashDir}`);
  while (Date.now() < until && execs < a.runs) {
    const shared = new SharedArrayBuffer(8 + TARGETS.get(name)!.maxLen + 64);
    const job: WorkerJob = { target: name, seed, corpusDirs: [committedDir(name), saveDir], saveDir, crashDir, slowMs: a.slowMs, coverage: a.coverage, untilEpochMs: until, runs: a.runs - execs, shared };
    const w = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: job });
    const beat = new Int32Array(shared, 0, 2);
    const cur = new Uint8Array(shared, 8);
    let lastBeat = -1;
    let lastChange = Date.now();
    let lastPrint = 0;
    const ended = await new Promise<'done' | 'hang' | 'error'>((resolve) => {
      const dog = setInterval(() => {
        const b = Atomics.load(beat, 0);
        if (b !== lastBeat) {
          lastBeat = b;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > a.hangMs) {
          clearInterval(dog);
          const input = Buffer.from(cur.subarray(0, Atomics.load(beat, 1)));
          const path = saveFinding(crashDir, name, { kind: 'slow', message: `no return after ${a.hangMs} ms (hang)`, stack: '', input, ms: a.hangMs });
          console.log(`  HANG: ${path}`);
          findings++;
          void w.terminate().then(() => resolve('hang'));
        }
      }, 250);
      w.on('message', (m: { type: string; [k: string]: unknown }) => {
        if (m.type === 'loaded') console.log(`  loaded ${m.inputs} inputs: ${m.features} features`);
        else if (m.type === 'finding') {
          findings++;
          console.log(`  FINDING (${m.kind}) ${m.message}\n    ${m.path}`);
        } else if (m.type === 'stats') {
          const s = m as unknown as { execs: number; corpus: number; features: number; ms: number };
          if (s.ms - lastPrint >= 10_000) {
            lastPrint = s.ms;
            console.log(`  [${fmt(s.ms / 1000)} s] ${fmt(execs + s.execs)} execs (${fmt((s.execs * 1000) / s.ms)}/s), corpus ${s.corpus}, features ${s.features}`);
          }
        } else if (m.type === 'done') {
          const s = m as unknown as { execs: number; corpus: number; features: number; initialFeatures: number; ms: number };
          execs += s.execs;
          console.log(`  done: ${fmt(s.execs)} execs in ${(s.ms / 1000).toFixed(0)} s (${fmt((s.execs * 1000) / Math.max(1, s.ms))}/s), features ${s.initialFeatures} → ${s.features}, corpus ${s.corpus}`);
        }
      });
      w.on('error', (e) => {
        console.error(`  worker error: ${e.stack ?? e}`);
        clearInterval(dog);
        resolve('error');
      });
      w.on('exit', () => {
        clearInterval(dog);
        resolve('done');
      });
    });
    if (ended === 'error') break;
    seed++;
  }
  console.log(`  ${name}: ${fmt(execs)} execs, ${findings} finding(s)`);
  return { execs, findings };
}

/** Run one saved input through the oracle. */
function reproduce(name: string, file: string): number {
  const target = TARGETS.get(name)!;
  const input = readFileSync(file);
  const f = runOne(target, input);
  if (!f) {
    console.log(`${name}: ${file} (${input.length} bytes) passes the oracle`);
    return 0;
  }
  console.log(`${name}: ${file} (${input.length} bytes): ${f.kind}\n${f.message}\n${f.stack}`);
  return 1;
}

/** Rewrite the committed corpus from the target's seeds, keeping only seeds that add coverage. */
function initCorpus(name: string, extra: Buffer[] = [], replace = true): void {
  const target = TARGETS.get(name)!;
  const dir = committedDir(name);
  const candidates = replace ? [...target.seeds(), ...extra] : [...readCorpus(dir), ...extra];
  if (replace) rmSync(dir, { recursive: true, force: true });
  const e = new Engine(target, { seed: 1 });
  e.start();
  let kept = 0;
  const uniq = new Map(candidates.map((b) => [b.toString('hex'), b]));
  // Smallest first, so that a big input is only kept for coverage the small ones do not reach.
  for (const b of [...uniq.values()].sort((x, y) => x.length - y.length)) {
    if (b.length > target.maxLen) continue;
    if (e.exec(b)) {
      saveInput(dir, b);
      kept++;
    }
  }
  e.stop();
  console.log(`${name}: ${kept} of ${uniq.size} inputs kept in ${dir} (${e.features.size} features)`);
}

async function main(): Promise<number> {
  const a = parseArgs(process.argv.slice(2));
  if (a.list || a.targets.length === 0) {
    for (const t of TARGETS.values()) console.log(`${t.name.padEnd(16)} ${t.about}`);
    if (a.targets.length === 0 && !a.list) console.log('\nusage: npm run fuzz -- <target|all> [--time S] (see tools/fuzz/cli.ts, docs/fuzzing.md)');
    return 0;
  }
  if (a.reproduce) return reproduce(a.targets[0]!, a.reproduce);
  if (a.initCorpus) {
    for (const t of a.targets) initCorpus(t);
    return 0;
  }
  if (a.merge) {
    for (const t of a.targets) initCorpus(t, readCorpus(a.merge), false);
    return 0;
  }
  let findings = 0;
  for (const t of a.targets) findings += (await fuzz(t, a)).findings;
  return findings > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(e.message);
    process.exit(2);
  },
);
