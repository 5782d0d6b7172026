/**
 * Message deduplication (RFC 7252 §4.5): remembers, per peer and Message ID, the encoded datagram
 * that answered a CON or NON request, so that a retransmission is answered by replaying those bytes
 * instead of running the handler again.
 *
 * Memory is bounded however many peers send: at most `perPeer` entries per peer (the peer's oldest
 * is evicted first) and `maxEntries` in total (the globally oldest is evicted first). Expiry
 * (EXCHANGE_LIFETIME for CON, NON_LIFETIME for NON) is lazy — checked on lookup and swept from the
 * oldest end on insert — so there are no per-entry timers.
 *
 * Entries sit in a `Map` per peer, by Message ID, for lookup and on two intrusive doubly-linked
 * lists, one global and one per peer, both in insertion order, so that finding and removing the
 * oldest entry is O(1). (Iterating a V8 `Map` from its head after many deletions is not: deleted
 * slots are skipped until the next rehash, which made a flood from distinct peers ~20× slower per
 * request.) A request costs no string key of its own (the peer's key is the engine's), and removed
 * entries are reused for the next inserts, so that the steady state of a flood (every insert evicts
 * its peer's oldest) allocates nothing here.
 *
 * A remembered response is kept in an allocation of its own, never as a view into a larger one:
 * the engine's encoded datagrams are small `Buffer.allocUnsafe` results, views into Node's shared
 * 8 KiB pool slabs, and one of them cached for EXCHANGE_LIFETIME (247 s) keeps its whole slab
 * alive, with everything else allocated from it meanwhile (issue 17: `maxEntries` such views can pin
 * `maxEntries` slabs, ~160 MiB at the default 20 000). Copying costs one small allocation per
 * cached response and bounds the cache's native memory by the bytes it actually holds.
 *
 * Why this is not the project's `lru-cache` (issue 15): it keeps two orders at once, the global one
 * and one per peer, so that a peer at its `perPeer` bound loses its own oldest entry, not the
 * globally oldest one (which would let one busy peer flush everyone's windows). lru-cache has one
 * order; the per-peer lists would have to be kept beside it anyway, with its dispose hook to keep
 * them in step, on the path every request takes.
 */

/** One remembered exchange. */
export interface DedupEntry {
  /** When the entry stops suppressing duplicates (ms, the engine's clock). */
  readonly expires: number;
  /** What to send again for a duplicate; `null` means "stay silent". */
  readonly response: Buffer | null;
}

class Entry implements DedupEntry {
  prev: Entry | null = null;
  next: Entry | null = null;
  peerPrev: Entry | null = null;
  peerNext: Entry | null = null;
  constructor(
    public window: PeerWindow,
    public mid: number,
    public expires: number,
    public response: Buffer | null,
  ) {}
}

/** One peer's entries: by Message ID, and oldest first. */
class PeerWindow {
  head: Entry | null = null;
  tail: Entry | null = null;
  readonly byMid = new Map<number, Entry>();
  constructor(readonly peer: string) {}
}

/** Limits of a {@link DedupCache}. */
export interface DedupLimits {
  /** Entries across all peers (default 20 000 in the engine). */
  maxEntries: number;
  /** Entries per peer (default 32 in the engine). */
  perPeer: number;
}

/** `b` itself when it spans its whole ArrayBuffer, else a copy in an allocation of its own (not from the pool). */
export function ownBytes(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength) return b;
  const own = Buffer.allocUnsafeSlow(b.byteLength);
  b.copy(own);
  return own;
}

/** Removed entries kept for reuse (a few: the steady state removes one per insert). */
const SPARE_ENTRIES = 16;

/** A bounded, timer-free cache of responses keyed by peer and Message ID. */
export class DedupCache {
  private readonly peers = new Map<string, PeerWindow>();
  private head: Entry | null = null;
  private tail: Entry | null = null;
  private count = 0;
  private readonly spare: Entry[] = [];
  private readonly maxEntries: number;
  private readonly perPeer: number;

  constructor(limits: DedupLimits) {
    if (!(limits.maxEntries >= 1) || !(limits.perPeer >= 1)) throw new RangeError('dedup limits must be at least 1');
    this.maxEntries = limits.maxEntries;
    this.perPeer = limits.perPeer;
  }

  /** Number of live entries (never more than `maxEntries`). */
  get size(): number {
    return this.count;
  }

  /** Number of peers with at least one entry (never more than `size`). */
  get peerCount(): number {
    return this.peers.size;
  }

  /** The unexpired entry for message `mid` of `peer`, or undefined (an expired one is dropped). */
  get(peer: string, mid: number, now: number): DedupEntry | undefined {
    const w = this.peers.get(peer);
    if (w === undefined) return undefined;
    const e = w.byMid.get(mid);
    if (e === undefined) return undefined;
    if (e.expires <= now) {
      this.remove(e);
      return undefined;
    }
    return e;
  }

  /** Remember `response` for message `mid` of `peer` until `expires`, evicting to stay within the limits. */
  set(peer: string, mid: number, response: Buffer | null, expires: number, now: number): void {
    // Lazy expiry: drop a few expired entries from the oldest end (amortised O(1) per insert).
    for (let n = 0; n < 4 && this.head !== null && this.head.expires <= now; n++) this.remove(this.head);
    let w = this.peers.get(peer);
    if (w === undefined) {
      w = new PeerWindow(peer);
      this.peers.set(peer, w);
    } else {
      const old = w.byMid.get(mid);
      if (old !== undefined) this.remove(old);
      if (w.byMid.size >= this.perPeer) this.remove(w.head!);
      if (w.byMid.size === 0) this.peers.set(peer, w); // remove() dropped the now-empty window
    }
    const e = this.entry(w, mid, expires, response === null ? null : ownBytes(response));
    // Global list: append.
    e.prev = this.tail;
    if (this.tail !== null) this.tail.next = e;
    else this.head = e;
    this.tail = e;
    // Peer list: append.
    e.peerPrev = w.tail;
    if (w.tail !== null) w.tail.peerNext = e;
    else w.head = e;
    w.tail = e;
    w.byMid.set(mid, e);
    this.count++;
    while (this.count > this.maxEntries) this.remove(this.head!);
  }

  /** A fresh entry, reusing a removed one when there is one (no allocation in the steady state). */
  private entry(w: PeerWindow, mid: number, expires: number, response: Buffer | null): Entry {
    const e = this.spare.pop();
    if (e === undefined) return new Entry(w, mid, expires, response);
    e.window = w;
    e.mid = mid;
    e.expires = expires;
    e.response = response;
    return e;
  }

  private remove(e: Entry): void {
    if (e.prev !== null) e.prev.next = e.next;
    else this.head = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    else this.tail = e.prev;
    const w = e.window;
    if (e.peerPrev !== null) e.peerPrev.peerNext = e.peerNext;
    else w.head = e.peerNext;
    if (e.peerNext !== null) e.peerNext.peerPrev = e.peerPrev;
    else w.tail = e.peerPrev;
    e.prev = e.next = e.peerPrev = e.peerNext = null;
    w.byMid.delete(e.mid);
    this.count--;
    if (w.byMid.size === 0) this.peers.delete(w.peer);
    e.response = null;
    if (this.spare.length < SPARE_ENTRIES) this.spare.push(e);
  }

  /** Forget everything. */
  clear(): void {
    this.peers.clear();
    this.head = this.tail = null;
    this.count = 0;
    this.spare.length = 0;
  }
}
