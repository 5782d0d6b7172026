/**
 * Coverage feedback from V8's own block coverage (node:inspector, Profiler.startPreciseCoverage with
 * callCount and detailed): no instrumentation, no native addon. After each input the counters are
 * taken (and reset) and turned into features: (block, AFL hit-count bucket) pairs for the blocks of the
 * watched source files. V8 reports a block only where its count differs from the enclosing range, so
 * every block ever reported is remembered and its count read from the innermost range that contains it
 * now — a block that went from never run to run as often as its function still counts as new.
 */
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface FunctionCoverage {
  ranges: Range[];
}
interface ScriptCoverage {
  url: string;
  functions: FunctionCoverage[];
}

/** AFL's hit-count classes: 1, 2, 3, 4–7, 8–15, 16–31, 32–127, 128+. */
export function bucket(count: number): number {
  if (count <= 3) return count;
  if (count < 8) return 4;
  if (count < 16) return 5;
  if (count < 32) return 6;
  if (count < 128) return 7;
  return 8;
}

/** The blocks ever reported in one function: their offsets and feature ids. */
interface KnownBlocks {
  byKey: Map<number, number>;
  starts: number[];
  ends: number[];
  ids: number[];
}

/** Block coverage of the current thread, read as features (numbers: block id × 16 + hit-count bucket). */
export class Coverage {
  private readonly session = new Session();
  /** url → function start → the blocks ever reported in it. */
  private readonly blocks = new Map<string, Map<number, KnownBlocks>>();
  private nextId = 0;
  private running = false;

  /** `watch`: substrings of the script URLs whose blocks count (e.g. `/src/protocol/cbor.ts`). */
  constructor(private readonly watch: readonly string[]) {}

  /** Blocks seen so far in the watched scripts. */
  get knownBlocks(): number {
    return this.nextId;
  }

  private post<T>(method: string, params: object = {}): T {
    let result: T | undefined;
    let error: Error | null = null;
    // Posts to the session of the own thread are answered synchronously.
    this.session.post(method, params, (e, r) => {
      error = e;
      result = r as T;
    });
    if (error) throw error;
    if (result === undefined) throw new Error(`inspector did not answer ${method} synchronously`);
    return result;
  }

  /** Start counting (the counters are reset). */
  start(): void {
    if (this.running) return;
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
    this.running = true;
  }

  /** Stop counting and let V8 drop the counters (the rest of the process runs at full speed again). */
  stop(): void {
    if (!this.running) return;
    this.post('Profiler.stopPreciseCoverage');
    this.post('Profiler.disable');
    this.session.disconnect();
    this.running = false;
  }

  /** The features hit since the last call (the counters are reset). */
  take(): number[] {
    const { result } = this.post<{ result: ScriptCoverage[] }>('Profiler.takePreciseCoverage');
    const out: number[] = [];
    for (const script of result) {
      if (!this.watch.some((w) => script.url.includes(w))) continue;
      let known = this.blocks.get(script.url);
      if (!known) this.blocks.set(script.url, (known = new Map()));
      for (const fn of script.functions) {
        const ranges = fn.ranges;
        const top = ranges[0];
        if (!top || top.count === 0) continue;
        let k = known.get(top.startOffset);
        if (!k) known.set(top.startOffset, (k = { byKey: new Map(), starts: [], ends: [], ids: [] }));
        for (const r of ranges) {
          const key = r.startOffset * 1_000_003 + r.endOffset;
          if (!k.byKey.has(key)) {
            k.byKey.set(key, this.nextId);
            k.starts.push(r.startOffset);
            k.ends.push(r.endOffset);
            k.ids.push(this.nextId++);
          }
        }
        for (let b = 0; b < k.ids.length; b++) {
          const s = k.starts[b]!;
          const e = k.ends[b]!;
          // Ranges nest and are sorted by start: the innermost containing the block is the last one,
          // in that order, that starts at or before it and ends at or after it.
          let lo = 0;
          let hi = ranges.length - 1;
          while (lo < hi) {
            const mid = (lo + hi + 1) >> 1;
            if (ranges[mid]!.startOffset <= s) lo = mid;
            else hi = mid - 1;
          }
          let count = 0;
          for (let i = lo; i >= 0; i--) {
            const r = ranges[i]!;
            if (r.startOffset <= s && r.endOffset >= e) {
              count = r.count;
              break;
            }
          }
          if (count > 0) out.push(k.ids[b]! * 16 + bucket(count));
        }
      }
    }
    return out;
  }
}
