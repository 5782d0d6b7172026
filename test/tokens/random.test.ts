import assert from 'node:assert/strict';
import { pooledRandom } from '../../src/tokens/random.ts';

describe('pooledRandom', () => {
  it('hands out consecutive, never overlapping slices and refills with a new pool', () => {
    let fills = 0;
    const counter = (b: Buffer): Buffer => {
      for (let i = 0; i < b.length; i++) b[i] = (fills * 251 + i) & 0xff;
      fills++;
      return b;
    };
    const random = pooledRandom(64, counter);
    const a = random(8);
    const b = random(8);
    assert.deepEqual([...a], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...b], [8, 9, 10, 11, 12, 13, 14, 15]);
    const kept = Buffer.from(a);
    for (let i = 0; i < 6; i++) random(8); // 64 bytes used
    assert.equal(fills, 1);
    const c = random(8);
    assert.equal(fills, 2, 'a new pool once the first is used up');
    assert.deepEqual(a, kept, 'earlier slices are not overwritten by a refill');
    assert.notDeepEqual([...c], [...a]);
  });

  it('gives large requests their own buffer and validates n', () => {
    const random = pooledRandom(64);
    assert.equal(random(17).length, 17);
    assert.equal(random(0).length, 0);
    assert.throws(() => random(-1), RangeError);
    assert.throws(() => random(1.5), RangeError);
    assert.throws(() => pooledRandom(10), RangeError);
  });

  it('returns bytes from the CSPRNG: 1,000 8-byte values are distinct', () => {
    const random = pooledRandom();
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) seen.add(random(8).toString('hex'));
    assert.equal(seen.size, 1000);
  });
});
