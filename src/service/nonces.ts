/**
 * The used-once set of PROTOCOL.md §3. Nonces are verified statelessly (MAC + expiry); this set only
 * remembers the ones already accepted, until they expire. Memory is bounded twice: entries drop out
 * with their expiry (whole time buckets at once, no per-entry timers), and a hard cap refuses new
 * entries when full — a refused nonce makes the device fetch a fresh one (4.01), never a replay.
 */

const BUCKET_S = 16;

export class UsedNonces {
  private readonly buckets = new Map<number, Set<string>>();
  private count = 0;
  private lastSweep = -1;

  constructor(private readonly maxEntries = 2_000_000) {}

  /** Number of nonces remembered. */
  get size(): number {
    return this.count;
  }

  private sweep(now: number): void {
    if (now === this.lastSweep) return;
    this.lastSweep = now;
    for (const [b, set] of this.buckets) {
      // A bucket holds expiries in [b*BUCKET_S, (b+1)*BUCKET_S): drop it once all have passed.
      if ((b + 1) * BUCKET_S <= now) {
        this.count -= set.size;
        this.buckets.delete(b);
      }
    }
  }

  /** True when `nonce` was already accepted (and has not expired). */
  has(nonce: Uint8Array, expiry: number): boolean {
    return this.buckets.get(Math.floor(expiry / BUCKET_S))?.has(Buffer.from(nonce).toString('latin1')) ?? false;
  }

  /**
   * Mark `nonce` (valid until `expiry`) as used. Returns false when it was already used or the set is
   * full; the caller must then refuse the request.
   */
  use(nonce: Uint8Array, expiry: number, now: number): boolean {
    this.sweep(now);
    const b = Math.floor(expiry / BUCKET_S);
    let set = this.buckets.get(b);
    const key = Buffer.from(nonce).toString('latin1');
    if (set?.has(key)) return false;
    if (this.count >= this.maxEntries) return false;
    if (!set) {
      set = new Set();
      this.buckets.set(b, set);
    }
    set.add(key);
    this.count++;
    return true;
  }
}

/** Serializes async work per key (one device ID at a time) with no unbounded growth. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key);
    const next = (prev ? prev.then(fn, fn) : fn()) as Promise<T>;
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  get size(): number {
    return this.tails.size;
  }
}
