/**
 * The one bounded LRU of the project (issue 15): lru-cache, configured once. A leaf with no other
 * imports, so every layer may use it (pure: no I/O, no clock — no TTL is set, so lru-cache never
 * reads one).
 */
import { LRUCache } from 'lru-cache';

/**
 * A map of at most `max` entries that drops its least recently used entry for a new one (`onEvict`
 * is told). Bounded by `maxSize` with every entry of size 1 rather than by `max`, so that memory grows
 * with the entries held: given `max`, lru-cache allocates its index arrays for all of them up front
 * (about 2.8 MB per 100,000 entries, measured; a dozen tables of up to 10,000,000 keys each).
 * `get` and `set` make an entry the most recently used; `peek` reads without touching the order.
 */
export function boundedLru<K extends {}, V extends {}>(max: number, onEvict?: (value: V, key: K) => void): LRUCache<K, V> {
  return new LRUCache<K, V>({
    maxSize: Math.max(1, max),
    sizeCalculation: () => 1,
    ...(onEvict ? { dispose: (v: V, k: K, reason: LRUCache.DisposeReason) => void (reason === 'evict' && onEvict(v, k)) } : {}),
  });
}
