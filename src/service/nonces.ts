/**
 * The used-once set of docs/spec/idprov-coap-v1.md §3. Nonces are verified statelessly (MAC + expiry); this set only
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

  /** Seconds from `now` until the earliest entries expire and make room (at least 1). */
  freesInS(now: number): number {
    let first = Infinity;
    for (const b of this.buckets.keys()) first = Math.min(first, b);
    return first === Infinity ? 1 : Math.max(1, (first + 1) * BUCKET_S - now);
  }
}

/** Which part of the used-once set a request's nonce goes to (issue #11, F3). */
export type NoncePartition = 'vouched' | 'other';

/** What {@link PartitionedNonces.use} did. */
export type UseOutcome = { ok: true } | { ok: false; why: 'used' } | { ok: false; why: 'full'; retryS: number };

/**
 * The used-once set in two parts with their own caps (issue #11, F3): nonces of requests signed with a
 * vouched key (allowlisted, provisioned, admin-approved or proven by the entry's OOB secret), and all
 * others. Anyone can spend the second part (any key, any ID); only key holders the admin vouched for
 * can spend the first, each at most at its own rate limit, so a flood of fake IDs fills the second
 * part and never the first. A nonce is looked up in both parts: it is never accepted twice, whichever
 * part took it first.
 */
export class PartitionedNonces {
  private readonly parts: Record<NoncePartition, UsedNonces>;

  constructor(caps: Readonly<Record<NoncePartition, number>>) {
    this.parts = { vouched: new UsedNonces(caps.vouched), other: new UsedNonces(caps.other) };
  }

  /** Nonces remembered in each part. */
  get sizes(): Record<NoncePartition, number> {
    return { vouched: this.parts.vouched.size, other: this.parts.other.size };
  }

  /** True when `nonce` was already used (in either part). */
  has(nonce: Uint8Array, expiry: number): boolean {
    return this.parts.vouched.has(nonce, expiry) || this.parts.other.has(nonce, expiry);
  }

  /** Mark `nonce` used in `part`: refused when already used (in either part) or when `part` is full. */
  use(nonce: Uint8Array, expiry: number, now: number, part: NoncePartition): UseOutcome {
    if (this.has(nonce, expiry)) return { ok: false, why: 'used' };
    const p = this.parts[part];
    if (p.use(nonce, expiry, now)) return { ok: true };
    return { ok: false, why: 'full', retryS: p.freesInS(now) };
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
