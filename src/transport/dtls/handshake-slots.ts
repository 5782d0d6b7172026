/**
 * The half-open handshake table with a fair share per source (issue 11 F6). A handshake exists only
 * after the client returned a cookie, so its address is return-routable and worth counting: one IPv4
 * address, or one IPv6 /64 (a single host usually holds a whole /64), is one *source*.
 *
 * - An address holds at most `perAddress` slots and a /64 at most `perPrefix`; past that the source
 *   competes with itself: its own oldest handshake goes.
 * - When the whole table is full, the source holding the most slots loses its oldest one, so a host
 *   cycling source ports only ever evicts its own handshakes. The only slot of another source is
 *   never taken: when every source holds one slot, a newcomer is refused (its ClientHello is dropped
 *   statelessly and it retries on its retransmission timer).
 *
 * Cost: O(1) per handshake, except at a full table, where finding the largest source scans the
 * sources (at most `max` of them, and only sources that completed a cookie exchange).
 */
import type { Source } from '../source.ts';

interface Unit {
  count: number;
  /** Handshakes per address of this source, each oldest first. */
  byAddr: Map<string, Set<unknown>>;
}

/** What to do before adding a handshake from a source: drop `evict` (if any), or refuse the new one. */
export type Admission<T> = { refuse: false; evict: T | undefined } | { refuse: true };

/** Half-open handshakes grouped by source. `T` is the handshake object (a Connection). */
export class HandshakeSlots<T> {
  private readonly src = new Map<T, Source>();
  private readonly units = new Map<string, Unit>();

  constructor(
    readonly max: number,
    readonly perAddress: number,
    readonly perPrefix: number,
  ) {
    if (!(max >= 1 && perAddress >= 1 && perPrefix >= perAddress)) throw new RangeError('need max ≥ 1 and perPrefix ≥ perAddress ≥ 1');
  }

  /** Handshakes held. */
  get size(): number {
    return this.src.size;
  }

  /** Every handshake, oldest first. */
  values(): IterableIterator<T> {
    return this.src.keys();
  }

  /** Slots held by an address (tests, stats). */
  heldBy(address: string): number {
    for (const u of this.units.values()) {
      const s = u.byAddr.get(address);
      if (s !== undefined) return s.size;
    }
    return 0;
  }

  /** Decide how a new handshake from `s` gets a slot. Changes nothing. */
  admit(s: Source): Admission<T> {
    const key = s.prefix ?? s.address;
    const own = this.units.get(key);
    const mine = own?.byAddr.get(s.address);
    if (mine !== undefined && mine.size >= this.perAddress) return { refuse: false, evict: first(mine) as T };
    if (own !== undefined && s.prefix !== undefined && own.count >= this.perPrefix) return { refuse: false, evict: oldestOfLargest(own) as T };
    if (this.src.size < this.max) return { refuse: false, evict: undefined };
    let best: Unit | undefined;
    for (const u of this.units.values()) if (best === undefined || u.count > best.count) best = u;
    if (best === undefined) return { refuse: false, evict: undefined };
    // On a tie the newcomer's own source pays.
    const victim = own !== undefined && own.count >= best.count ? own : best;
    if (victim !== own && victim.count <= 1) return { refuse: true };
    return { refuse: false, evict: oldestOfLargest(victim) as T };
  }

  /** Add a handshake from `s` (after {@link admit} made room). */
  add(item: T, s: Source): void {
    if (this.src.has(item)) return;
    this.src.set(item, s);
    const key = s.prefix ?? s.address;
    let u = this.units.get(key);
    if (u === undefined) this.units.set(key, (u = { count: 0, byAddr: new Map() }));
    let set = u.byAddr.get(s.address);
    if (set === undefined) u.byAddr.set(s.address, (set = new Set()));
    set.add(item);
    u.count++;
  }

  /** Remove a handshake (finished, failed, timed out, evicted); a no-op for one not held. */
  delete(item: T): void {
    const s = this.src.get(item);
    if (s === undefined) return;
    this.src.delete(item);
    const key = s.prefix ?? s.address;
    const u = this.units.get(key)!;
    const set = u.byAddr.get(s.address)!;
    set.delete(item);
    if (set.size === 0) u.byAddr.delete(s.address);
    if (--u.count === 0) this.units.delete(key);
  }
}

function first(s: Set<unknown>): unknown {
  return s.values().next().value;
}

/** The oldest handshake of the address holding the most slots within a source. */
function oldestOfLargest(u: Unit): unknown {
  let best: Set<unknown> | undefined;
  for (const s of u.byAddr.values()) if (best === undefined || s.size > best.size) best = s;
  return best === undefined ? undefined : first(best);
}
