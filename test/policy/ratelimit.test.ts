/**
 * Charges to several rate-limit buckets at once (issue #11 F4, review finding 5): all or none, the
 * longest wait reported; a peek takes nothing.
 */
import assert from 'node:assert/strict';
import { BucketTable, takeEvery } from '../../src/policy/ratelimit.ts';

describe('a charge to several buckets at once (takeAll)', () => {
  it('takes from every key or from none, and reports the longest wait', () => {
    const t = new BucketTable({ rate: 1, burst: 2 }, 100);
    assert.ok(t.takeAll(['a', 'p'], 0).ok);
    assert.ok(t.takeAll(['b', 'p'], 0).ok);
    const no = t.takeAll(['c', 'p'], 0);
    assert.equal(no.ok, false, 'the shared prefix is empty');
    assert.equal(no.retryS, 1);
    assert.ok(t.takeAll(['c'], 0).ok && t.takeAll(['c'], 0).ok, 'nothing was taken from c by the refused charge');
  });
});

describe('a charge to buckets of different limits at once (takeEvery)', () => {
  it('takes from every table or from none, and reports the longest wait', () => {
    const small = new BucketTable({ rate: 1, burst: 1 }, 100);
    const big = new BucketTable({ rate: 1, burst: 3 }, 100);
    assert.ok(takeEvery([[small, 'a'], [big, 'p']], 0).ok);
    const no = takeEvery([[small, 'a'], [big, 'p']], 0);
    assert.equal(no.ok, false, 'a is empty');
    assert.equal(no.retryS, 1);
    assert.ok(takeEvery([[small, 'b'], [big, 'p']], 0).ok && takeEvery([[small, 'c'], [big, 'p']], 0).ok, 'p lost nothing to the refused charge');
    assert.equal(takeEvery([[small, 'd'], [big, 'p']], 0).ok, false, 'p is empty after three');
    assert.ok(small.peek('d', 0).ok, 'd lost nothing to the refused charge');
  });

  it('peeks without taking a token or tracking a new key', () => {
    const t = new BucketTable({ rate: 1, burst: 1 }, 100);
    assert.ok(t.peek('x', 0).ok);
    assert.equal(t.size, 0);
    assert.ok(t.take('x', 0).ok);
    assert.equal(t.peek('x', 0).ok, false);
    assert.equal(t.peek('x', 0).retryS, 1);
    assert.ok(t.peek('x', 1000).ok, 'refilled after a second');
  });
});
