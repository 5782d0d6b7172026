/**
 * The used-once set of docs/spec/idprov-coap-v1.md §3. Nonces are verified statelessly (MAC + expiry); this set only
 * remembers the ones already accepted, until they expire. Memory is bounded twice: entries drop out
 * with their expiry (whole time buckets at once, no per-entry timers), and a hard cap refuses new
 * entries when full — a refused nonce makes the device fetch a fresh one (4.01), never a replay.
 */

const BUCKET_S = 16;

/** Slots of a bucket's table when it is made (a power of two; it doubles from half full). */
const FIRST_SLOTS = 1024;

/**
 * The nonces of one time bucket, as 64-bit fingerprints in an open-addressing table of two typed
 * arrays (issue 17): about 16–32 bytes per nonce outside the JavaScript heap, where a `Set` of latin1
 * strings took about 120 bytes of old space each (≈ 300,000 of them at 1,000 requests/s over a
 * nonce's 300 s) and an allocation per lookup.
 *
 * A fingerprint is a nonce's last 8 bytes: in the layout of protocol/nonce.ts these are MAC bytes,
 * keyed by the server's secret, and only nonces whose MAC verified reach this set. The same nonce
 * always has the same fingerprint, so a replay is always refused. Two different nonces share one only
 * by a 64-bit collision of MACs nobody but the server can compute (for 2.5 million nonces remembered,
 * a chance of about 10⁻¹³ per request), and what that costs is a refusal: the device fetches a
 * fresh nonce (4.01), as it does for any used one. Nothing is ever accepted twice.
 */
class FingerprintTable {
  private hi = new Uint32Array(FIRST_SLOTS);
  private lo = new Uint32Array(FIRST_SLOTS);
  /** (0, 0) marks an empty slot, so that fingerprint is remembered here. */
  private zero = false;
  size = 0;

  /** True when the fingerprint (hi, lo) is in the table; with `add`, puts it in when it is not. */
  private probe(hi: number, lo: number, add: boolean): boolean {
    if (hi === 0 && lo === 0) {
      const had = this.zero;
      if (add && !had) {
        this.zero = true;
        this.size++;
      }
      return had;
    }
    const mask = this.hi.length - 1;
    for (let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask; ; i = (i + 1) & mask) {
      const h = this.hi[i]!;
      const l = this.lo[i]!;
      if (h === hi && l === lo) return true;
      if (h === 0 && l === 0) {
        if (add) {
          this.hi[i] = hi;
          this.lo[i] = lo;
          if (++this.size * 2 > this.hi.length) this.grow();
        }
        return false;
      }
    }
  }

  has(hi: number, lo: number): boolean {
    return this.probe(hi, lo, false);
  }

  /** Put the fingerprint in; false when it was there already. */
  add(hi: number, lo: number): boolean {
    return !this.probe(hi, lo, true);
  }

  private grow(): void {
    const { hi, lo } = this;
    this.hi = new Uint32Array(hi.length * 2);
    this.lo = new Uint32Array(lo.length * 2);
    this.size = this.zero ? 1 : 0;
    for (let i = 0; i < hi.length; i++) if (hi[i] !== 0 || lo[i] !== 0) this.probe(hi[i]!, lo[i]!, true);
  }
}

/** The fingerprint of `nonce` (its last 8 bytes; a shorter one, zero-padded in front, with its length mixed in). */
function fingerprintOf(nonce: Uint8Array): [number, number] {
  const n = nonce.length;
  if (n >= 8) {
    return [((nonce[n - 8]! << 24) | (nonce[n - 7]! << 16) | (nonce[n - 6]! << 8) | nonce[n - 5]!) >>> 0, ((nonce[n - 4]! << 24) | (nonce[n - 3]! << 16) | (nonce[n - 2]! << 8) | nonce[n - 1]!) >>> 0];
  }
  const b = new Uint8Array(8);
  b.set(nonce, 8 - n);
  const [hi, lo] = fingerprintOf(b);
  return [(hi ^ (0x80000000 | n)) >>> 0, lo];
}

export class UsedNonces {
  private readonly buckets = new Map<number, FingerprintTable>();
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
    for (const [b, table] of this.buckets) {
      // A bucket holds expiries in [b*BUCKET_S, (b+1)*BUCKET_S): drop it once all have passed.
      if ((b + 1) * BUCKET_S <= now) {
        this.count -= table.size;
        this.buckets.delete(b);
      }
    }
  }

  /** True when `nonce` was already accepted (and has not expired). */
  has(nonce: Uint8Array, expiry: number): boolean {
    const table = this.buckets.get(Math.floor(expiry / BUCKET_S));
    if (!table) return false;
    const [hi, lo] = fingerprintOf(nonce);
    return table.has(hi, lo);
  }

  /**
   * Mark `nonce` (valid until `expiry`) as used. Returns false when it was already used or the set is
   * full; the caller must then refuse the request.
   */
  use(nonce: Uint8Array, expiry: number, now: number): boolean {
    this.sweep(now);
    const b = Math.floor(expiry / BUCKET_S);
    let table = this.buckets.get(b);
    const [hi, lo] = fingerprintOf(nonce);
    if (table?.has(hi, lo)) return false;
    if (this.count >= this.maxEntries) return false;
    if (!table) {
      table = new FingerprintTable();
      this.buckets.set(b, table);
    }
    table.add(hi, lo);
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
