/**
 * The coverage-guided loop: pick an input from the corpus, mutate it, run the target, keep the
 * mutant when it reached a (block, hit-count) feature no input reached before. Failures of the oracle
 * are findings, deduplicated by their kind and message. Runs in-process (the mocha test) or inside
 * the CLI's worker (which adds a watchdog for inputs that never return).
 */
import { Coverage } from './coverage.ts';
import { mutate } from './mutate.ts';
import { Rng } from './rng.ts';
import { OracleError, type Target } from './target.ts';

/** A broken oracle. */
export interface Finding {
  kind: 'crash' | 'oracle' | 'slow';
  message: string;
  stack: string;
  input: Buffer;
  ms: number;
}

export interface EngineOptions {
  seed: number;
  /** Guide by coverage (default true); without it every mutant is thrown away (pure random havoc). */
  coverage?: boolean;
  /** An input that takes longer than this is a `slow` finding (default: none). */
  slowMs?: number;
  /** Called for each input kept in the corpus. */
  onNew?: (input: Buffer) => void;
  /** Called once per distinct finding. */
  onFinding?: (f: Finding) => void;
  /** Called before each input runs (the CLI's watchdog keeps a copy). */
  beforeRun?: (input: Buffer) => void;
}

/** Execute `target.run` on `input`; the failure, if any, as a finding. */
export function runOne(target: Target, input: Buffer, slowMs = Infinity): Finding | undefined {
  const t0 = performance.now();
  let failure: unknown;
  try {
    target.run(input);
  } catch (e) {
    failure = e;
  }
  const ms = performance.now() - t0;
  if (failure !== undefined) {
    const e = failure instanceof Error ? failure : new Error(String(failure));
    return { kind: e instanceof OracleError ? 'oracle' : 'crash', message: `${e.name}: ${e.message}`, stack: e.stack ?? '', input, ms };
  }
  if (ms > slowMs) return { kind: 'slow', message: `took ${ms.toFixed(0)} ms (limit ${slowMs} ms)`, stack: '', input, ms };
  return undefined;
}

export class Engine {
  readonly corpus: Buffer[] = [];
  readonly features = new Set<number>();
  readonly findings: Finding[] = [];
  private readonly seen = new Set<string>();
  private readonly unionSeen = new Set<number>();
  private readonly cov: Coverage | undefined;
  private readonly rng: Rng;
  execs = 0;
  /** Features after each kept input: (execs, features) pairs, for the growth curve. */
  readonly growth: Array<[number, number]> = [];

  constructor(
    readonly target: Target,
    private readonly o: EngineOptions,
  ) {
    this.rng = new Rng(o.seed);
    this.cov = o.coverage === false ? undefined : new Coverage(target.watch);
  }

  start(): void {
    this.cov?.start();
    this.cov?.take();
  }

  stop(): void {
    this.cov?.stop();
  }

  /** Keep a finding unless one of the same kind, message (digits aside) and top frame is kept. */
  private record(f: Finding): void {
    const key = `${f.kind}:${f.message.replace(/\d+/g, 'N')}:${f.stack.split('\n')[1] ?? ''}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.findings.push(f);
    this.o.onFinding?.(f);
  }

  /** Run one input; keep it if it adds coverage (or `force`). Returns true when kept. */
  exec(input: Buffer, force = false): boolean {
    this.o.beforeRun?.(input);
    const f = runOne(this.target, input, this.o.slowMs);
    this.execs++;
    let fresh = 0;
    if (this.cov) {
      for (const x of this.cov.take()) {
        if (!this.features.has(x)) {
          this.features.add(x);
          fresh++;
        }
      }
    }
    if (f) {
      this.record(f);
      return false;
    }
    if (fresh > 0 || force) {
      this.corpus.push(input);
      this.growth.push([this.execs, this.features.size]);
      if (fresh > 0 && !force) this.o.onNew?.(input);
      return true;
    }
    return false;
  }

  /** A mutant of a corpus input (recent ones a little more often). */
  private mutant(): Buffer {
    const c = this.corpus;
    if (c.length === 0) this.exec(Buffer.from([0]), true);
    const i = this.rng.chance(0.3) ? c.length - 1 - this.rng.below(Math.min(16, c.length)) : this.rng.below(c.length);
    return mutate(c[i]!, { rng: this.rng, maxLen: this.target.maxLen, dictionary: this.target.dictionary, corpus: c, cbor: this.target.cbor });
  }

  /** One mutation round: a mutant, run and kept if it adds coverage. */
  step(): boolean {
    return this.exec(this.mutant());
  }

  /**
   * `n` mutants run back to back and the coverage taken once for all of them (taking it costs more
   * than running most parsers). Only when their union reaches something new is each one run again
   * on its own to find which. Hit counts of a union are sums, which single inputs may never reach:
   * such a union feature is remembered in `unionSeen` and does not trigger a replay again.
   */
  batch(n: number): void {
    if (!this.cov) {
      for (let k = 0; k < n; k++) this.step();
      return;
    }
    const inputs: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const input = this.mutant();
      this.o.beforeRun?.(input);
      const f = runOne(this.target, input, this.o.slowMs);
      this.execs++;
      if (f) this.record(f);
      else inputs.push(input);
    }
    let fresh = false;
    for (const x of this.cov.take()) {
      if (!this.features.has(x) && !this.unionSeen.has(x)) {
        this.unionSeen.add(x);
        fresh = true;
      }
    }
    if (!fresh) return;
    this.cov.take();
    for (const input of inputs) this.exec(input);
  }

  /** Mutate and run until `iterations` runs or `untilMs` (performance.now()) passes. */
  loop(limit: { iterations?: number; untilMs?: number; batch?: number }): void {
    const end = this.execs + (limit.iterations ?? Infinity);
    const size = limit.batch ?? 8;
    while (this.execs < end && (limit.untilMs === undefined || performance.now() < limit.untilMs)) {
      for (let k = 0; k < 8 && this.execs < end; k++) this.batch(Math.max(1, Math.min(size, end - this.execs)));
    }
  }
}
