import assert from 'node:assert/strict';
import { boundedLru } from '../src/bounded-lru.ts';
import { NO_PREALLOCATION_BYTES, retainedGrowth } from './support/heap-growth.ts';

describe('boundedLru', () => {
  it('bounds by maxSize, not by lru-cache max (which preallocates its index for every entry)', () => {
    const lru = boundedLru<string, number>(1_000_000);
    assert.equal(lru.max, 0);
    assert.equal(lru.maxSize, 1_000_000);
  });

  it('allocates nothing up front for a large bound', async () => {
    const { bytes, made } = await retainedGrowth(() => boundedLru<string, number>(1_000_000));
    assert.ok(bytes < NO_PREALLOCATION_BYTES, `grew by ${bytes} bytes`);
    made.set('a', 1);
  });

  it('drops the least recently used entry for a new one, and tells onEvict', () => {
    const evicted: string[] = [];
    const lru = boundedLru<string, number>(2, (_v, k) => evicted.push(k));
    lru.set('a', 1);
    lru.set('b', 2);
    lru.get('a');
    lru.set('c', 3);
    assert.deepEqual([...lru.keys()].sort(), ['a', 'c']);
    assert.deepEqual(evicted, ['b']);
  });
});
