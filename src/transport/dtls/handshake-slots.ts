/**
 * The half-open handshake table with fair shares per source (issue 11 F6, and review findings 4
 * and 8). A handshake exists only after the client returned a cookie, so its address is
 * return-routable and worth counting. Sources nest: an IPv4 address stands alone; an IPv6 address
 * sits in its /64 (a single host usually holds one), its /56 (a site) and its /48 (what a tunnel
 * broker gives anyone for free).
 *
 * - Under pressure only (the table at least half full): an address holds at most `perAddress`
 *   slots and a /64 at most `perPrefix`; past that the source competes with itself: its own oldest
 *   handshake goes. With room to spare, a site of many devices behind one NAT address starts as
 *   many handshakes as it needs.
 * - When the whole table is full, the largest top-level source (IPv4 address or IPv6 /48; on a
 *   tie the newcomer's own) loses a slot: within it the largest /56, within that the largest /64,
 *   within that the address holding the most, and of that address its oldest handshake. So a host
 *   cycling source ports, or the /64s of one /48, only ever evict their own handshakes.
 * - When every top-level source holds one slot, the oldest handshake of the table goes if it is
 *   older than `floorMs` (a few seconds: longer than a slow device needs for its flight 5 after
 *   flight 4); otherwise the newcomer is refused (its ClientHello is dropped statelessly and it
 *   retries on its retransmission timer). So nobody can keep the table shut, and a slot lives at
 *   least `floorMs` whoever asks.
 *
 * Cost: O(1) per handshake, except at a full table, where finding the largest source scans the
 * top-level sources and then the children along one path (each at most `max`).
 */
import type { Source } from '../source.ts';

/** A node of the source tree: a /48, /56, /64 or an address (a leaf, with its handshakes). */
interface Group {
  count: number;
  children: Map<string, Group>;
  /** Handshakes of an address (leaves only), oldest first. */
  items: Set<unknown> | undefined;
}

interface Held {
  path: string[];
  at: number;
}

/** What to do before adding a handshake from a source: drop `evict` (if any), or refuse the new one. */
export type Admission<T> = { refuse: false; evict: T | undefined } | { refuse: true };

/** Options of {@link HandshakeSlots}. */
export interface HandshakeSlotsOptions {
  /** A slot of a source holding only that one is taken for a newcomer only when older than this (default 5,000 ms). */
  floorMs?: number;
  /** Milliseconds (default `Date.now`). */
  clock?: () => number;
}

/** The keys of a source from the top of the tree down to its address. */
function treePathOf(s: Source): string[] {
  if (s.prefix === undefined || s.prefix56 === undefined || s.prefix48 === undefined) return [`a ${s.address}`];
  return [`48 ${s.prefix48}`, `56 ${s.prefix56}`, `64 ${s.prefix}`, `a ${s.address}`];
}

function emptyGroup(): Group {
  return { count: 0, children: new Map(), items: undefined };
}

/** Half-open handshakes grouped by source. `T` is the handshake object (a Connection). */
export class HandshakeSlots<T> {
  private readonly held = new Map<T, Held>();
  private readonly root = emptyGroup();
  private readonly floorMs: number;
  private readonly clock: () => number;

  constructor(
    readonly max: number,
    readonly perAddress: number,
    readonly perPrefix: number,
    opts: HandshakeSlotsOptions = {},
  ) {
    if (!(max >= 1 && perAddress >= 1 && perPrefix >= perAddress)) throw new RangeError('need max ≥ 1 and perPrefix ≥ perAddress ≥ 1');
    this.floorMs = opts.floorMs ?? 5_000;
    this.clock = opts.clock ?? Date.now;
  }

  /** Handshakes held. */
  get size(): number {
    return this.held.size;
  }

  /** Every handshake, oldest first. */
  values(): IterableIterator<T> {
    return this.held.keys();
  }

  /** Slots held by an address (tests, stats). */
  heldBy(address: string): number {
    const find = (g: Group): number => {
      for (const [k, c] of g.children) {
        if (k === `a ${address}`) return c.count;
        if (c.items === undefined) {
          const n = find(c);
          if (n > 0) return n;
        }
      }
      return 0;
    };
    return find(this.root);
  }

  /** Decide how a new handshake from `s` gets a slot. Changes nothing. */
  admit(s: Source): Admission<T> {
    const path = treePathOf(s);
    const chain: (Group | undefined)[] = [];
    let g: Group | undefined = this.root;
    for (const k of path) chain.push((g = g?.children.get(k)));
    const leaf = chain[chain.length - 1];
    if (2 * this.held.size >= this.max) {
      if (leaf !== undefined && leaf.count >= this.perAddress) return { refuse: false, evict: oldestIn(leaf.items!) as T };
      const p64 = path.length === 4 ? chain[2] : undefined;
      if (p64 !== undefined && p64.count >= this.perPrefix) return { refuse: false, evict: oldestOfLargest(p64) as T };
    }
    if (this.held.size < this.max) return { refuse: false, evict: undefined };
    let best: Group | undefined;
    for (const u of this.root.children.values()) if (best === undefined || u.count > best.count) best = u;
    if (best === undefined) return { refuse: false, evict: undefined };
    const own = chain[0];
    // On a tie the newcomer's own source pays; a source may always replace its own.
    if (own !== undefined && own.count >= best.count) return { refuse: false, evict: oldestOfLargest(own) as T };
    if (best.count > 1) return { refuse: false, evict: oldestOfLargest(best) as T };
    const [oldest, h] = this.held.entries().next().value as [T, Held];
    if (this.clock() - h.at >= this.floorMs) return { refuse: false, evict: oldest };
    return { refuse: true };
  }

  /** Add a handshake from `s` (after {@link admit} made room). */
  add(item: T, s: Source): void {
    if (this.held.has(item)) return;
    const path = treePathOf(s);
    this.held.set(item, { path, at: this.clock() });
    let g = this.root;
    g.count++;
    for (const k of path) {
      let c = g.children.get(k);
      if (c === undefined) g.children.set(k, (c = emptyGroup()));
      c.count++;
      g = c;
    }
    (g.items ??= new Set()).add(item);
  }

  /** Remove a handshake (finished, failed, timed out, evicted); a no-op for one not held. */
  delete(item: T): void {
    const h = this.held.get(item);
    if (h === undefined) return;
    this.held.delete(item);
    let g = this.root;
    g.count--;
    const chain: [Group, string][] = [];
    for (const k of h.path) {
      chain.push([g, k]);
      g = g.children.get(k)!;
      g.count--;
    }
    g.items!.delete(item);
    for (let i = chain.length - 1; i >= 0; i--) {
      const [parent, k] = chain[i]!;
      if (parent.children.get(k)!.count === 0) parent.children.delete(k);
    }
  }
}

/** The oldest of a set kept in insertion order. */
function oldestIn(s: Set<unknown>): unknown {
  return s.values().next().value;
}

/** The oldest handshake of the largest child, all the way down to an address. */
function oldestOfLargest(g: Group): unknown {
  while (g.items === undefined) {
    let best: Group | undefined;
    for (const c of g.children.values()) if (best === undefined || c.count > best.count) best = c;
    if (best === undefined) return undefined;
    g = best;
  }
  return oldestIn(g.items);
}
