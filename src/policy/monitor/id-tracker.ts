/**
 * The security monitor's `many-ids` tracker (issue #6, issue 11 F14): distinct device IDs per source
 * in a sliding window, in bounded memory. Pure: no I/O, the clock is an argument. The flag it leads to
 * is written by `manyIdsNote` (./flag-rules.ts); the service's SecurityMonitor owns the instance.
 */
import { EvictedCounts, RecentPairs } from './id-tracker-sketch.ts';
import { monitorSource } from './tracked-source.ts';

/** Settings of the {@link AddressTracker}. */
export interface TrackerSettings {
  /** Distinct IDs from one source within `windowS` that raise `many-ids`. */
  threshold: number;
  /** The sliding window (s). */
  windowS: number;
  /** Sources tracked exactly at most (see {@link AddressTracker} for what happens beyond). */
  maxAddresses: number;
}

/** IDs kept per source for the evidence of a `many-ids` flag. */
const SAMPLE = 5;

interface SourceWindow {
  /** 32-bit hash of an ID → last seen (s), oldest first. Never more than `threshold` entries. */
  seen: Map<number, number>;
  /** The last few IDs, for evidence. */
  sample: string[];
  /** Distinct IDs counted before the source was last dropped (an upper estimate), valid until `carriedUntil`. */
  carried: number;
  carriedUntil: number;
  /** Last activity (s). */
  last: number;
  /** The count bucket the source is filed under (see `AddressTracker.buckets`). */
  bucket: number;
}

/** FNV-1a, 32 bits: IDs are counted by hash so that a source costs ~40 bytes per ID tracked. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** What the tracker saw when a new ID pushed a source to (or past) the threshold. */
export interface ManyIds {
  /** The source: an IPv4 address, or an IPv6 /64 (`2001:db8:0:1::/64`). */
  address: string;
  /** Distinct IDs in the window (capped at the threshold: the tracker keeps no more). */
  distinct: number;
  /** The most recent IDs, newest last. */
  sample: string[];
  /** True when part of `distinct` was remembered across a drop from the table (an upper estimate). */
  estimated?: boolean;
}

/**
 * Counts distinct device IDs per source in a sliding window (issue #6; issue 11 F14). A source is an
 * IPv4 address or an IPv6 /64 ({@link monitorSource}).
 *
 * Up to `maxAddresses` sources are counted exactly. When a new source needs a slot, the one dropped is
 * a source idle for a whole window if there is one, else the source with the *fewest* IDs in its
 * window (least recently active among equals) — not the least recently active, so a flood of one-shot
 * addresses cannot push out the source that is sending many IDs. A dropped source's count goes into a
 * fixed-size count-min sketch ({@link EvictedCounts}) and comes back with it when the source returns
 * within the window; the (source, ID) pairs of the last window or two are kept in a Bloom filter
 * ({@link RecentPairs}), so that a returning source's repeats are not counted again. Cycling through
 * more addresses than the table holds therefore no longer resets anyone's count: 40,000 IDs from 300
 * addresses with 100 slots raise the flag (test/policy/monitor/unit.test.ts).
 *
 * Bounded: at most `maxAddresses` sources × `threshold` ID hashes (~40 bytes each) plus the sketch
 * (8 bytes × 4 rows × the power of two ≥ 4 × `maxAddresses`, at most 32 MiB: 2 MiB at the defaults) and
 * the filters (2 × ~10 bits per pair for `maxAddresses × threshold` pairs, at most 16 MiB: 2 MiB at the
 * defaults), whatever arrives.
 */
export class AddressTracker {
  /** Sources in order of last activity, least recent first. */
  private readonly bySource = new Map<string, SourceWindow>();
  /** Sources by their count of distinct IDs (capped at the threshold), least recently active first; no empty sets. */
  private readonly buckets = new Map<number, Set<string>>();
  private readonly dropped: EvictedCounts;
  private readonly pairs: RecentPairs;
  /** Sources dropped to make room since creation. */
  evicted = 0;

  constructor(readonly s: TrackerSettings) {
    const t = Math.max(0, s.threshold);
    this.dropped = new EvictedCounts(t > 0 ? s.maxAddresses : 0);
    this.pairs = new RecentPairs(t > 0 ? s.maxAddresses * t : 0, s.windowS);
  }

  /** Sources tracked exactly now. */
  get size(): number {
    return this.bySource.size;
  }

  /** IDs tracked now over every source (tests, metrics). */
  get entries(): number {
    let n = 0;
    for (const w of this.bySource.values()) n += w.seen.size;
    return n;
  }

  /** Bytes of the fixed-size structures (the sketch and the pair filters). */
  get fixedBytes(): number {
    return this.dropped.bytes + this.pairs.bytes;
  }

  private unfile(src: string, w: SourceWindow): void {
    const b = this.buckets.get(w.bucket);
    b?.delete(src);
    if (b?.size === 0) this.buckets.delete(w.bucket);
  }

  private file(src: string, w: SourceWindow): void {
    this.unfile(src, w);
    w.bucket = Math.min(this.s.threshold, w.carried + w.seen.size);
    let b = this.buckets.get(w.bucket);
    if (!b) this.buckets.set(w.bucket, (b = new Set()));
    b.add(src);
  }

  /** Make room for one more source. */
  private evict(nowS: number): void {
    const { windowS } = this.s;
    let victim: string | undefined;
    const [oldest, ow] = this.bySource.entries().next().value ?? [];
    if (oldest !== undefined && ow && ow.last <= nowS - windowS) victim = oldest;
    else {
      let min = Infinity;
      for (const n of this.buckets.keys()) if (n < min) min = n;
      victim = this.buckets.get(min)?.values().next().value;
    }
    if (victim === undefined) return;
    const w = this.bySource.get(victim)!;
    this.expire(w, nowS);
    const count = w.carried + w.seen.size;
    if (count > 0) this.dropped.record(victim, count, Math.max(w.carriedUntil, w.last + windowS), nowS);
    this.unfile(victim, w);
    this.bySource.delete(victim);
    this.evicted++;
  }

  /** Forget what left the window (oldest first, so stop at the first one still inside). */
  private expire(w: SourceWindow, nowS: number): void {
    for (const [h, t] of w.seen) {
      if (t > nowS - this.s.windowS) break;
      w.seen.delete(h);
    }
    if (w.carried > 0 && w.carriedUntil <= nowS) w.carried = 0;
  }

  /**
   * Record that `id` asked from `address` at `nowS`. Returns what to flag when `id` is new in the
   * window and the source has now sent `threshold` or more distinct IDs; undefined otherwise.
   */
  observe(address: string, id: string, nowS: number): ManyIds | undefined {
    const { threshold, maxAddresses } = this.s;
    if (threshold <= 0) return undefined;
    const src = monitorSource(address);
    let w = this.bySource.get(src);
    if (w) this.bySource.delete(src);
    else {
      if (this.bySource.size >= maxAddresses) this.evict(nowS);
      const back = this.dropped.estimate(src, nowS);
      w = { seen: new Map(), sample: [], carried: Math.min(back.count, threshold), carriedUntil: back.untilS, last: nowS, bucket: -1 };
    }
    this.bySource.set(src, w);
    w.last = nowS;
    this.expire(w, nowS);
    const h = hash32(id);
    const inSeen = w.seen.has(h);
    // A source that came back may have sent this ID before it was dropped: then `carried` counts it.
    const inCarried = !inSeen && w.carried > 0 && this.pairs.seen(src, id, nowS);
    const isNew = !inSeen && !inCarried;
    this.pairs.add(src, id, nowS);
    if (!inCarried) {
      w.seen.delete(h);
      if (isNew && w.seen.size >= threshold) {
        const first = w.seen.keys().next().value;
        if (first !== undefined) w.seen.delete(first);
      }
      w.seen.set(h, nowS);
    }
    if (isNew) {
      w.sample.push(id);
      if (w.sample.length > SAMPLE) w.sample.shift();
    }
    this.file(src, w);
    const distinct = Math.min(threshold, w.carried + w.seen.size);
    if (!isNew || distinct < threshold) return undefined;
    return w.carried > 0 ? { address: src, distinct, sample: [...w.sample], estimated: true } : { address: src, distinct, sample: [...w.sample] };
  }
}
