/**
 * Block-wise transfer helpers (RFC 7959) and a bounded cache of full responses, so that the blocks
 * after the first of a large response are served without running the handler again.
 *
 * The cache holds at most `maxEntries` responses and `maxBytes` payload bytes in total, evicts the
 * oldest first, and expires entries lazily (no timers); it is an `lru-cache` underneath. A response larger than `maxBytes` is not
 * cached; for GET its later blocks are produced by running the handler again (GET is safe and
 * idempotent, RFC 7252 §5.1), and an ETag over the full representation lets the client notice if
 * it changed between blocks (RFC 7959 §2.4).
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

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

/** Limits for {@link BlockCache}. */
export interface BlockCacheLimits {
  maxEntries: number;
  maxBytes: number;
  lifetimeMs: number;
}

interface Slot {
  readonly rep: CachedRepresentation;
  readonly expires: number;
}

/**
 * A bounded, timer-free cache of large responses, keyed by peer and request, on `lru-cache`: it
 * bounds the payload bytes (`maxSize`) and evicts the oldest first; the entry bound is kept here
 * in `set`. Not `boundedLru`, which spends lru-cache's `maxSize` on counting entries; and not
 * lru-cache's `max`, which allocates its index arrays for all `maxEntries` up front. Entries
 * are read with `peek`, which leaves their order alone, so the oldest is the first inserted, as
 * RFC 7959 §2.4 block state wants (a client fetching block 5 does not make the representation
 * younger). The lifetime is checked here against the engine's clock (the `now` arguments), not by
 * lru-cache's TTL, which reads its own clock and arms a timer per lookup.
 */
export class BlockCache {
  /** Undefined when the limits allow nothing (`maxEntries` or `maxBytes` 0). */
  private readonly slots: LRUCache<string, Slot> | undefined;
  /** No entry expires before this (a lower bound of the oldest entry's expiry; Infinity when empty). */
  private sweepAfter = Infinity;

  constructor(private readonly limits: BlockCacheLimits) {
    this.slots =
      limits.maxEntries > 0 && limits.maxBytes > 0
        ? new LRUCache<string, Slot>({
            maxSize: limits.maxBytes,
            // lru-cache sizes are positive; an empty representation (never served block-wise) counts 1.
            sizeCalculation: (s) => s.rep.payload.length || 1,
          })
        : undefined;
  }

  /** Entries held. */
  get size(): number {
    return this.slots?.size ?? 0;
  }

  /** Payload bytes held. */
  get byteCount(): number {
    return this.slots?.calculatedSize ?? 0;
  }

  get(key: string, now: number): CachedRepresentation | undefined {
    const s = this.slots?.peek(key);
    if (s === undefined) return undefined;
    if (s.expires <= now) {
      this.slots!.delete(key);
      return undefined;
    }
    return s.rep;
  }

  set(key: string, rep: CachedRepresentation, now: number): void {
    const slots = this.slots;
    if (slots === undefined) return;
    // A representation over the byte budget is not cached, and replaces nothing.
    if (rep.payload.length > this.limits.maxBytes) {
      slots.delete(key);
      return;
    }
    // Expired entries go first, from the oldest end (the lifetime is the same for all, so they are
    // the oldest); then the oldest live one goes if the entries are at their bound, and lru-cache
    // evicts the oldest live ones until the new one's bytes fit. `sweepAfter`
    // is at most the oldest entry's expiry, so the oldest is looked at only when it may have expired.
    if (now >= this.sweepAfter) this.dropExpired(slots, now);
    if (slots.size >= this.limits.maxEntries && !slots.has(key)) slots.delete(slots.rkeys().next().value!);
    slots.set(key, { rep, expires: now + this.limits.lifetimeMs });
    if (this.sweepAfter === Infinity) this.sweepAfter = now + this.limits.lifetimeMs;
  }

  private dropExpired(slots: LRUCache<string, Slot>, now: number): void {
    for (;;) {
      const oldest = slots.rkeys().next();
      if (oldest.done === true) {
        this.sweepAfter = Infinity;
        return;
      }
      const expires = slots.peek(oldest.value)!.expires;
      if (expires > now) {
        this.sweepAfter = expires;
        return;
      }
      slots.delete(oldest.value);
    }
  }

  clear(): void {
    this.slots?.clear();
    this.sweepAfter = Infinity;
  }
}
