/**
 * Token-bucket rate limits (issue #6), as pure math plus a bounded table of buckets. No I/O, no clock:
 * every call takes `nowMs`. The provisioning service keeps one {@link BucketTable} per scope (source
 * address, device ID) and answers 4.29 with Max-Age = {@link Take.retryS} when a bucket is empty
 * (docs/spec/idprov-coap-v1.md §4, `err` 9).
 */

import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../bounded-lru.ts';

/** A bucket's limit: `rate` tokens per second refill, at most `burst` tokens held. `rate` 0 = no limit. */
export interface BucketLimit {
  rate: number;
  burst: number;
}

/** The state of one bucket: tokens held at time `at` (ms). */
export interface Bucket {
  tokens: number;
  at: number;
}

/** The result of taking one token. */
export interface Take {
  ok: boolean;
  /** The bucket after the attempt (refilled to `nowMs`, minus the token when `ok`). */
  bucket: Bucket;
  /** When refused: whole seconds until a token is available (at least 1). 0 when `ok`. */
  retryS: number;
}

/** A full bucket: the state of a key never seen (or idle long enough to refill). */
export function fullBucket(limit: BucketLimit, nowMs: number): Bucket {
  return { tokens: limit.burst, at: nowMs };
}

/** `b` refilled at `limit.rate` per second up to `limit.burst` at `nowMs` (a clock going back refills nothing). */
export function refill(b: Bucket, limit: BucketLimit, nowMs: number): Bucket {
  const dt = Math.max(0, nowMs - b.at);
  return { tokens: Math.min(limit.burst, b.tokens + (dt * limit.rate) / 1000), at: Math.max(b.at, nowMs) };
}

/** Take one token from `b` at `nowMs`. Pure: returns the new state. */
export function take(b: Bucket, limit: BucketLimit, nowMs: number): Take {
  if (limit.rate <= 0) return { ok: true, bucket: b, retryS: 0 };
  const r = refill(b, limit, nowMs);
  if (r.tokens >= 1) return { ok: true, bucket: { tokens: r.tokens - 1, at: r.at }, retryS: 0 };
  const waitMs = ((1 - r.tokens) * 1000) / limit.rate;
  return { ok: false, bucket: r, retryS: Math.max(1, Math.ceil(waitMs / 1000)) };
}

/**
 * Buckets per key (an address, a device ID) with a hard cap on the keys tracked. When full, the least
 * recently used key is dropped; a dropped key starts again with a full bucket, which for a key idle
 * long enough is exactly its state anyway. Memory: about 150 bytes per key.
 */
export class BucketTable {
  private readonly buckets: LRUCache<string, Bucket>;
  /** Keys dropped to make room since creation (metrics, tests). */
  evicted = 0;

  constructor(
    readonly limit: BucketLimit,
    readonly maxKeys: number,
  ) {
    this.buckets = boundedLru<string, Bucket>(maxKeys, () => this.evicted++);
  }

  /** Keys tracked now (never more than `maxKeys`). */
  get size(): number {
    return this.buckets.size;
  }

  /** Take one token for `key` at `nowMs`. A disabled limit (rate 0) tracks nothing. */
  take(key: string, nowMs: number): Take {
    if (this.limit.rate <= 0) return { ok: true, bucket: fullBucket(this.limit, nowMs), retryS: 0 };
    const t = take(this.buckets.peek(key) ?? fullBucket(this.limit, nowMs), this.limit, nowMs);
    // The key becomes the most recently used; a new key in a full table drops the least recently used.
    this.buckets.set(key, t.bucket);
    return t;
  }

  /** Whether `key` has a token at `nowMs`, without taking it or touching its place in the table. */
  peek(key: string, nowMs: number): Take {
    if (this.limit.rate <= 0) return { ok: true, bucket: fullBucket(this.limit, nowMs), retryS: 0 };
    const b = this.buckets.peek(key);
    if (!b) return { ok: true, bucket: fullBucket(this.limit, nowMs), retryS: 0 };
    const r = refill(b, this.limit, nowMs);
    if (r.tokens >= 1) return { ok: true, bucket: r, retryS: 0 };
    return { ok: false, bucket: r, retryS: Math.max(1, Math.ceil(((1 - r.tokens) * 1000) / this.limit.rate / 1000)) };
  }

  /**
   * Take one token from every key of `keys` at `nowMs`, or from none: when any of them is empty,
   * nothing is spent and the answer is the longest wait among them (an IPv6 source is charged to its
   * address and to its /64, and must have room in both).
   */
  takeAll(keys: readonly string[], nowMs: number): Take {
    if (keys.length === 1) return this.take(keys[0]!, nowMs);
    if (this.limit.rate <= 0) return { ok: true, bucket: fullBucket(this.limit, nowMs), retryS: 0 };
    let retryS = 0;
    let last: Bucket = fullBucket(this.limit, nowMs);
    for (const k of keys) {
      const b = this.buckets.peek(k);
      const t = take(b ?? fullBucket(this.limit, nowMs), this.limit, nowMs);
      if (!t.ok) retryS = Math.max(retryS, t.retryS);
      last = t.bucket;
    }
    if (retryS > 0) return { ok: false, bucket: last, retryS };
    for (const k of keys) last = this.take(k, nowMs).bucket;
    return { ok: true, bucket: last, retryS: 0 };
  }
}

/**
 * Take one token for every charge (a table and a key) at `nowMs`, or for none: when any bucket is
 * empty nothing is spent and the answer is the longest wait among them. For budgets kept in tables
 * of their own limits, e.g. an IPv6 source's address and /64, /56 and /48.
 */
export function takeEvery(charges: ReadonlyArray<readonly [BucketTable, string]>, nowMs: number): Take {
  let retryS = 0;
  for (const [table, key] of charges) {
    const p = table.peek(key, nowMs);
    if (!p.ok) retryS = Math.max(retryS, p.retryS);
  }
  if (retryS > 0) return { ok: false, bucket: { tokens: 0, at: nowMs }, retryS };
  let last: Take = { ok: true, bucket: { tokens: 0, at: nowMs }, retryS: 0 };
  for (const [table, key] of charges) last = table.take(key, nowMs);
  return last;
}
