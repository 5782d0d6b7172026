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
 * Entries sit in a `Map` for lookup and on two intrusive doubly-linked lists, one global and one per
 * peer, both in insertion order, so that finding and removing the oldest entry is O(1). (Iterating a
 * V8 `Map` from its head after many deletions is not: deleted slots are skipped until the next
 * rehash, which made a flood from distinct peers ~20× slower per request.)
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
    readonly key: string,
    readonly window: PeerWindow,
    readonly expires: number,
    readonly response: Buffer | null,
  ) {}
}

/** One peer's entries, oldest first. */
class PeerWindow {
  head: Entry | null = null;
  tail: Entry | null = null;
  count = 0;
  constructor(readonly peer: string) {}
}

/** Limits of a {@link DedupCache}. */
export interface DedupLimits {
  /** Entries across all peers (default 20 000 in the engine). */
  maxEntries: number;
  /** Entries per peer (default 32 in the engine). */
  perPeer: number;
}

/** A bounded, timer-free cache of responses keyed by peer and Message ID. */
export class DedupCache {
  private readonly entries = new Map<string, Entry>();
  private readonly peers = new Map<string, PeerWindow>();
  private head: Entry | null = null;
  private tail: Entry | null = null;
  private readonly maxEntries: number;
  private readonly perPeer: number;

  constructor(limits: DedupLimits) {
    if (!(limits.maxEntries >= 1) || !(limits.perPeer >= 1)) throw new RangeError('dedup limits must be at least 1');
    this.maxEntries = limits.maxEntries;
    this.perPeer = limits.perPeer;
  }

  /** Number of live entries (never more than `maxEntries`). */
  get size(): number {
    return this.entries.size;
  }

  /** Number of peers with at least one entry (never more than `size`). */
  get peerCount(): number {
    return this.peers.size;
  }

  /** The unexpired entry for `key`, or undefined (an expired one is dropped). */
  get(key: string, now: number): DedupEntry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= now) {
      this.remove(e);
      return undefined;
    }
    return e;
  }

  /** Remember `response` for `key` (which belongs to `peer`) until `expires`, evicting to stay within the limits. */
  set(peer: string, key: string, response: Buffer | null, expires: number, now: number): void {
    const old = this.entries.get(key);
    if (old !== undefined) this.remove(old);
    // Lazy expiry: drop a few expired entries from the oldest end (amortised O(1) per insert).
    for (let n = 0; n < 4 && this.head !== null && this.head.expires <= now; n++) this.remove(this.head);
    let w = this.peers.get(peer);
    if (w === undefined) {
      w = new PeerWindow(peer);
      this.peers.set(peer, w);
    } else if (w.count >= this.perPeer) {
      this.remove(w.head!);
      if (w.count === 0) this.peers.set(peer, w); // remove() dropped the now-empty window
    }
    const e = new Entry(key, w, expires, response);
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
    w.count++;
    this.entries.set(key, e);
    while (this.entries.size > this.maxEntries) this.remove(this.head!);
  }

  private remove(e: Entry): void {
    this.entries.delete(e.key);
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
    if (--w.count === 0) this.peers.delete(w.peer);
  }

  /** Forget everything. */
  clear(): void {
    this.entries.clear();
    this.peers.clear();
    this.head = this.tail = null;
  }
}
