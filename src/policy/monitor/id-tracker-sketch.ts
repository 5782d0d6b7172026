/**
 * What the `many-ids` tracker remembers, in fixed memory, about the sources it had to drop (issue 11 F14).
 * With more sources than table slots an exact per-source table must forget someone; these two
 * structures make forgetting cheap to undo, so that cycling through more addresses than the table holds
 * no longer resets a source's count. Pure: no I/O, the clock is an argument.
 */

/** FNV-1a, 32 bits, with a seed: the hash family of both structures. */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche (murmur3 fmix32) so that nearby keys spread over every bit.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const SEEDS = [0x811c9dc5, 0x01000193, 0x5bd1e995, 0x27d4eb2f];

/** Smallest power of two ≥ n (and ≥ 64), at most 2^limitLog2. */
function pow2(n: number, limitLog2: number): number {
  let w = 64;
  while (w < n && w < 2 ** limitLog2) w *= 2;
  return w;
}

/**
 * A count-min sketch with max instead of sum ("conservative" for counts that are replaced, not added):
 * `record(key, n)` raises the key's cells to at least `n`, `estimate(key)` is the smallest of its cells.
 * The estimate is never below what was recorded for the key within its validity (no false negatives);
 * it can be above it when every cell of the key is shared with a larger count (a collision in all four
 * rows). Each cell is valid until the latest validity recorded into it.
 */
export class EvictedCounts {
  private readonly width: number;
  private readonly counts: Int32Array;
  /** Seconds since the epoch (unsigned 32 bits: good until 2106). */
  private readonly until: Uint32Array;

  /**
   * `capacity`: the table's size. Each row is 4 × `capacity` cells wide (a power of two, at most 2^20),
   * so that a key shares all four of its cells with bigger counts only when far more sources than the
   * table holds were dropped within one window.
   */
  constructor(capacity: number) {
    this.width = pow2(capacity * 4, 20);
    this.counts = new Int32Array(this.width * SEEDS.length);
    this.until = new Uint32Array(this.width * SEEDS.length);
  }

  /** Bytes used. */
  get bytes(): number {
    return this.counts.byteLength + this.until.byteLength;
  }

  private cell(key: string, row: number): number {
    return row * this.width + (fnv1a(key, SEEDS[row]) & (this.width - 1));
  }

  /** Remember that `key` had `count` until `untilS` (s). */
  record(key: string, count: number, untilS: number, nowS: number): void {
    for (let r = 0; r < SEEDS.length; r++) {
      const c = this.cell(key, r);
      const live = this.until[c]! > nowS;
      this.counts[c] = live ? Math.max(this.counts[c]!, count) : count;
      this.until[c] = live ? Math.max(this.until[c]!, untilS) : untilS;
    }
  }

  /** What was recorded for `key` and is still valid at `nowS` (0 when nothing), and until when. */
  estimate(key: string, nowS: number): { count: number; untilS: number } {
    let count = Infinity;
    let untilS = 0;
    for (let r = 0; r < SEEDS.length; r++) {
      const c = this.cell(key, r);
      const n = this.until[c]! > nowS ? this.counts[c]! : 0;
      if (n < count) {
        count = n;
        untilS = this.until[c]!;
      }
    }
    return count === 0 ? { count: 0, untilS: 0 } : { count, untilS };
  }
}

/**
 * The (source, ID) pairs seen in the current and the previous window: two Bloom filters that take turns
 * (the older is cleared when a window ends). It answers "was this ID from this source seen lately?"
 * for sources the exact table dropped, so that a gateway whose devices keep polling is not counted
 * again each time it comes back. A filter answers "seen" for a few pairs never seen (≤ ~1 % while below
 * `capacity`); once `capacity` distinct pairs went into the current filter it stops answering at all
 * (`seen` is false), so that a flood of pairs cannot make fresh IDs look old: past that the count can
 * only err upwards.
 */
export class RecentPairs {
  private readonly bits: number;
  private cur: Uint32Array;
  private prev: Uint32Array;
  private curInserts = 0;
  private prevInserts = 0;
  private epoch = -Infinity;

  private readonly capacity: number;

  /** `capacity`: pairs per window (at most 2^26 / 10: beyond, the filter would answer "seen" too often). */
  constructor(
    capacity: number,
    private readonly windowS: number,
  ) {
    // ~10 bits per pair and 4 probes: ~1 % false "seen" at capacity. At most 2^26 bits (8 MiB) a filter.
    this.bits = pow2(capacity * 10, 26);
    this.capacity = Math.min(capacity, Math.floor(this.bits / 10));
    this.cur = new Uint32Array(this.bits / 32);
    this.prev = new Uint32Array(this.bits / 32);
  }

  /** Bytes used. */
  get bytes(): number {
    return this.cur.byteLength + this.prev.byteLength;
  }

  private rotate(nowS: number): void {
    const e = Math.floor(nowS / this.windowS);
    if (e === this.epoch) return;
    if (e === this.epoch + 1) {
      [this.prev, this.cur] = [this.cur, this.prev];
      this.prevInserts = this.curInserts;
    } else {
      this.prev.fill(0);
      this.prevInserts = 0;
    }
    this.cur.fill(0);
    this.curInserts = 0;
    this.epoch = e;
  }

  private probes(key: string): number[] {
    const h1 = fnv1a(key, SEEDS[0]);
    const h2 = fnv1a(key, SEEDS[1]) | 1;
    return SEEDS.map((_, i) => (h1 + Math.imul(i, h2)) & (this.bits - 1));
  }

  private static has(f: Uint32Array, probes: number[]): boolean {
    return probes.every((p) => (f[p >>> 5]! & (1 << (p & 31))) !== 0);
  }

  /** Record the pair at `nowS`. */
  add(source: string, id: string, nowS: number): void {
    this.rotate(nowS);
    if (this.curInserts >= this.capacity) return;
    const probes = this.probes(`${source}\u0000${id}`);
    if (RecentPairs.has(this.cur, probes)) return; // a repeat: nothing to add, and it must not use up capacity
    for (const p of probes) this.cur[p >>> 5]! |= 1 << (p & 31);
    this.curInserts++;
  }

  /** True when the pair was (probably) recorded in this window or the one before. */
  seen(source: string, id: string, nowS: number): boolean {
    this.rotate(nowS);
    const probes = this.probes(`${source}\u0000${id}`);
    if (this.curInserts < this.capacity && RecentPairs.has(this.cur, probes)) return true;
    return this.prevInserts < this.capacity && RecentPairs.has(this.prev, probes);
  }
}
