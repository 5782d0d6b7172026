/**
 * Cryptographic randomness in small pieces, cheaply: `randomBytes(8)` costs a call into OpenSSL per
 * piece (~10 µs here), and a provisioning takes two (the challenge's nonce and the token's `cti`).
 * {@link pooledRandom} fills a pool once per `poolSize` bytes and hands out consecutive, never
 * reused slices of it — what Node's own `randomUUID` does.
 */
import { randomFillSync } from 'node:crypto';

/**
 * Returns `random(n)`: `n` fresh bytes from a CSPRNG. Each pool is filled once and never written
 * again, so a returned Buffer stays valid (it is a view of a pool that is simply dropped when used
 * up). Requests larger than a quarter of the pool get their own buffer.
 */
export function pooledRandom(poolSize = 4096, fill: (b: Buffer) => Buffer = randomFillSync): (n: number) => Buffer {
  if (!Number.isInteger(poolSize) || poolSize < 64) throw new RangeError('pooledRandom: poolSize must be an integer ≥ 64');
  let pool: Buffer = Buffer.alloc(0);
  let at = 0;
  return (n: number): Buffer => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError('random: n must be a non-negative integer');
    if (n > poolSize / 4) return fill(Buffer.allocUnsafeSlow(n));
    if (at + n > pool.length) {
      pool = fill(Buffer.allocUnsafeSlow(poolSize));
      at = 0;
    }
    const out = pool.subarray(at, at + n);
    at += n;
    return out;
  };
}
