/**
 * The security monitor's pure parts (issue #6): the per-address tracker of distinct device IDs, the
 * notes for a MAC seen under several IDs and for many IDs from one address, and the hold-flagged
 * decision. No I/O; the clock is an argument. The service feeds them and records what they return.
 */
import type { Decision, FlagKind, FlagNote } from './decide.ts';
import { monitorSource } from './source-prefix.ts';
import { EvictedCounts, RecentPairs } from './tracker-memory.ts';

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

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
 * addresses with 100 slots raise the flag (test/monitor/unit.test.ts).
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

/** The `many-ids` note for what {@link AddressTracker.observe} returned. */
export function manyIdsNote(m: ManyIds, id: string, windowS: number): FlagNote {
  return {
    kind: 'many-ids',
    deviceId: id,
    subject: `addr:${m.address}`,
    others: m.sample.filter((x) => x !== id),
    evidence: { address: m.address, distinct: String(m.distinct), windowS: String(windowS), recent: m.sample.join(' '), ...(m.estimated ? { estimated: 'yes' } : {}) },
  };
}

/** Most device IDs a `duplicate-mac` note names. */
export const MAX_MAC_PEERS = 20;

/**
 * The `duplicate-mac` note when a request's MAC is already recorded under other IDs (`peers`: the
 * devices and pending requests with that MAC, the requesting ID excluded), else undefined.
 */
export function duplicateMacNote(req: { id: string; mac?: Uint8Array; source: string }, peers: readonly string[]): FlagNote | undefined {
  if (!req.mac || peers.length === 0) return undefined;
  const mac = hexOf(req.mac);
  const others = peers.filter((p) => p !== req.id).slice(0, MAX_MAC_PEERS);
  if (others.length === 0) return undefined;
  return { kind: 'duplicate-mac', deviceId: req.id, subject: `mac:${mac}`, others, evidence: { mac, ids: [req.id, ...others].join(' '), source: req.source } };
}

/** An open flag as the hold decision sees it. */
export interface OpenFlagRef {
  id: string;
  kind: FlagKind;
  deviceIds: readonly string[];
  /**
   * Who raised it: `<device ID>@<key fingerprint>` of each request that observed it (the first
   * {@link MAX_FLAG_RAISERS}). Absent for flags recorded before the server kept it.
   */
  raisedBy?: readonly string[];
}

/** Raisers one flag remembers at most (evidence `raisedBy`). */
export const MAX_FLAG_RAISERS = 32;

/** The raiser of an observation: the request's device ID and the fingerprint of the key that signed it. */
export function raiserOf(id: string, fingerprint: string): string {
  return `${id}@${fingerprint}`;
}

/**
 * Flag kinds that do not hold a device: `many-ids` is about an address (a NAT with many devices looks
 * the same), not evidence against each device behind it.
 */
export const HOLD_EXEMPT: ReadonlySet<FlagKind> = new Set<FlagKind>(['many-ids']);

/** Settings of {@link holdFlagged}. */
export interface HoldSettings {
  /** Hold flagged devices pending instead of issuing tokens. Default false. */
  holdFlagged: boolean;
  /** Retry hint of a held device (s): the first pending retry. */
  retryS: number;
}

/**
 * The hold-flagged policy: with `holdFlagged` on, an approval for a device that has open flags (those
 * raised by this very request included) becomes a `hold` — answered like pending, no token — until an
 * admin clears the flags. Every other decision passes unchanged; so does everything when the setting
 * is off. `open` are the open flags naming `deviceId`.
 *
 * Only evidence about the key being approved holds (issue #11, F2): `approving` is the
 * {@link raiserOf} of the approval (the ID and the key it would bind the token to), and a flag holds
 * only when a request signed with that key raised it. A key-mismatch raised by some other key, an
 * OOB failure or a MAC mismatch by a key nobody vouched for, a `duplicate-mac` raised under another
 * ID: none of them proves anything about this device's key, and anyone can raise them, so they are
 * shown to admins but hold nobody. Flags without raisers (recorded by older versions) hold as before.
 */
export function holdFlagged(d: Decision, deviceId: string, open: readonly OpenFlagRef[], s: HoldSettings, approving?: string): Decision {
  if (!s.holdFlagged || d.kind !== 'approve') return d;
  const concerns = (f: OpenFlagRef): boolean => f.raisedBy === undefined || approving === undefined || f.raisedBy.includes(approving);
  const heldBy = open.filter((f) => !HOLD_EXEMPT.has(f.kind) && f.deviceIds.includes(deviceId) && concerns(f)).map((f) => f.id);
  if (heldBy.length === 0) return d;
  return { kind: 'hold', retryS: s.retryS, flags: d.flags, heldBy };
}

/**
 * Flag kinds about a state that persists (the MAC is still shared, still differs from the record, the
 * address still sends many IDs) rather than about one attempt. Clearing such a flag acknowledges what
 * it showed: the same observation does not raise it again (see {@link acknowledges}). Attempt kinds
 * (key-changed, key-mismatch, mac-mismatch, oob-failed, approved-key-changed) raise again on every new
 * attempt after a clear.
 */
export const STATE_KINDS: ReadonlySet<FlagKind> = new Set<FlagKind>(['mac-changed', 'duplicate-mac', 'many-ids']);

/**
 * True when a flag an admin cleared covers `note`, so that it is not raised again: a `duplicate-mac`
 * whose IDs were all in the cleared flag, a `mac-changed` from and to the same MACs, a `many-ids` for
 * the same address (an admin who clears it says the address is a gateway). Never for attempt kinds.
 */
export function acknowledges(cleared: { kind: string; deviceIds: readonly string[]; evidence: Readonly<Record<string, string>> }, note: FlagNote): boolean {
  if (cleared.kind !== note.kind || !STATE_KINDS.has(note.kind)) return false;
  switch (note.kind) {
    case 'duplicate-mac':
      return [note.deviceId, ...(note.others ?? [])].every((id) => cleared.deviceIds.includes(id));
    case 'mac-changed':
      return cleared.evidence['recorded'] === note.evidence['recorded'] && cleared.evidence['got'] === note.evidence['got'];
    default:
      return true;
  }
}
