/**
 * Block-wise transfer helpers (RFC 7959) and a bounded cache of full responses, so that the blocks
 * after the first of a large response are served without running the handler again.
 *
 * The cache holds at most `maxEntries` responses and `maxBytes` payload bytes in total, evicts the
 * oldest first, and expires entries lazily (no timers). A response larger than `maxBytes` is not
 * cached; for GET its later blocks are produced by running the handler again (GET is safe and
 * idempotent, RFC 7252 §5.1), and an ETag over the full representation lets the client notice if
 * it changed between blocks (RFC 7959 §2.4).
 */
import { createHash } from 'node:crypto';

/** A decoded Block1/Block2 value (RFC 7959 §2.2). */
export interface BlockValue {
  num: number;
  more: boolean;
  szx: number;
}

/** Split a raw Block option value into NUM / M / SZX. */
export function decodeBlock(raw: number): BlockValue {
  return { num: Math.floor(raw / 16), more: (raw & 8) !== 0, szx: raw & 7 };
}

/** Build a raw Block option value. */
export function encodeBlock(num: number, more: boolean, szx: number): number {
  return num * 16 + (more ? 8 : 0) + szx;
}

/** Block size in bytes for an SZX (RFC 7959 §2.2: 2^(SZX+4)). */
export function blockSize(szx: number): number {
  return 1 << (szx + 4);
}

/** SZX for a block size that is a power of two between 16 and 1024. */
export function szxOf(size: number): number {
  const szx = Math.log2(size) - 4;
  if (!Number.isInteger(szx) || szx < 0 || szx > 6) throw new RangeError(`block size ${size} is not 16..1024, a power of two`);
  return szx;
}

/** An 8-byte entity tag over a representation (RFC 7252 §5.10.6), stable for equal bytes. */
export function etagOf(payload: Buffer): Buffer {
  return createHash('sha256').update(payload).digest().subarray(0, 8);
}

/** What is kept of a large response. */
export interface CachedRepresentation {
  code: number;
  contentFormat: number | undefined;
  maxAge: number | undefined;
  /** The engine's ETag, undefined when the handler supplied its own (in `options`). */
  etag: Buffer | undefined;
  handlerEtag: boolean;
  payload: Buffer;
  /** Extra handler options (already sorted, engine-managed numbers removed). */
  options: readonly { number: number; value: Buffer }[] | undefined;
}

class Slot {
  prev: Slot | null = null;
  next: Slot | null = null;
  constructor(
    readonly key: string,
    readonly rep: CachedRepresentation,
    readonly expires: number,
  ) {}
}

/** Limits for {@link BlockCache}. */
export interface BlockCacheLimits {
  maxEntries: number;
  maxBytes: number;
  lifetimeMs: number;
}

/**
 * A bounded, timer-free cache of large responses, keyed by peer and request. Entries are on an
 * insertion-ordered linked list, so eviction of the oldest is O(1).
 */
export class BlockCache {
  private readonly slots = new Map<string, Slot>();
  private head: Slot | null = null;
  private tail: Slot | null = null;
  private bytes = 0;

  constructor(private readonly limits: BlockCacheLimits) {}

  /** Entries held. */
  get size(): number {
    return this.slots.size;
  }

  /** Payload bytes held. */
  get byteCount(): number {
    return this.bytes;
  }

  get(key: string, now: number): CachedRepresentation | undefined {
    const s = this.slots.get(key);
    if (s === undefined) return undefined;
    if (s.expires <= now) {
      this.delete(s);
      return undefined;
    }
    return s.rep;
  }

  set(key: string, rep: CachedRepresentation, now: number): void {
    const old = this.slots.get(key);
    if (old !== undefined) this.delete(old);
    const n = rep.payload.length;
    if (n > this.limits.maxBytes || this.limits.maxEntries === 0) return;
    // Expired entries first, then the oldest, until the new one fits.
    while (this.head !== null) {
      const full = this.slots.size >= this.limits.maxEntries || this.bytes + n > this.limits.maxBytes;
      if (!full && this.head.expires > now) break;
      this.delete(this.head);
    }
    const s = new Slot(key, rep, now + this.limits.lifetimeMs);
    s.prev = this.tail;
    if (this.tail !== null) this.tail.next = s;
    else this.head = s;
    this.tail = s;
    this.slots.set(key, s);
    this.bytes += n;
  }

  private delete(s: Slot): void {
    this.slots.delete(s.key);
    if (s.prev !== null) s.prev.next = s.next;
    else this.head = s.next;
    if (s.next !== null) s.next.prev = s.prev;
    else this.tail = s.prev;
    s.prev = s.next = null;
    this.bytes -= s.rep.payload.length;
  }

  clear(): void {
    this.slots.clear();
    this.head = this.tail = null;
    this.bytes = 0;
  }
}
