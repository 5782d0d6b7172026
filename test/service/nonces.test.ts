/**
 * The used-once nonce set (docs/spec/idprov-coap-v1.md §3: "accepted once"; "only the used-once set is kept, bounded by
 * the validity window") and the per-device mutex of the provisioning service. Time is passed in.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeNonce } from '../../src/protocol/nonce.ts';
import { KeyedMutex, PartitionedNonces, UsedNonces } from '../../src/service/nonces.ts';

const NOW = 1_767_225_600;
const nonce = (i: number): Buffer => {
  const b = Buffer.alloc(24);
  b.writeUInt32BE(i, 20);
  return b;
};

/** A promise with its resolve/reject handles. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Let every pending promise callback run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('used-once nonce set (docs/spec/idprov-coap-v1.md §3)', () => {
  it('accepts a nonce once and refuses its second use', () => {
    const used = new UsedNonces();
    assert.equal(used.has(nonce(1), NOW + 300), false);
    assert.equal(used.use(nonce(1), NOW + 300, NOW), true);
    assert.equal(used.has(nonce(1), NOW + 300), true);
    assert.equal(used.use(nonce(1), NOW + 300, NOW), false);
    assert.equal(used.use(nonce(1), NOW + 300, NOW + 200), false);
    assert.equal(used.size, 1);
  });

  it('keeps nonces apart by their bytes, not by their expiry alone', () => {
    const used = new UsedNonces();
    for (let i = 0; i < 100; i++) assert.equal(used.use(nonce(i), NOW + 300, NOW), true);
    assert.equal(used.size, 100);
  });

  it('compares a copy of the nonce bytes, so a reused receive buffer cannot alter a remembered nonce', () => {
    const used = new UsedNonces();
    const buf = nonce(7);
    used.use(buf, NOW + 300, NOW);
    buf.fill(0xff);
    assert.equal(used.has(nonce(7), NOW + 300), true);
  });

  it('still refuses a used nonce up to and including its expiry second', () => {
    const used = new UsedNonces();
    const exp = NOW + 300;
    used.use(nonce(1), exp, NOW);
    for (const t of [NOW + 1, NOW + 150, exp - 1, exp]) assert.equal(used.use(nonce(1), exp, t), false, `at +${t - NOW}`);
  });

  it('drops entries once their expiry has passed, so the size falls as time passes in', () => {
    const used = new UsedNonces();
    for (let i = 0; i < 50; i++) used.use(nonce(i), NOW + 10 + i, NOW);
    assert.equal(used.size, 50);
    // Expiries NOW+10 … NOW+59; a later request (nonce 1000, valid until far ahead) triggers the sweep.
    used.use(nonce(1000), NOW + 10_000, NOW + 40);
    assert.ok(used.size < 51, `size ${used.size} after 40 s`);
    assert.ok(used.size > 1 + (59 - 40), 'entries not yet expired are kept');
    // Entries drop out in whole 16-second buckets, so allow one bucket of slack past the last expiry.
    used.use(nonce(1001), NOW + 10_000, NOW + 59 + 16 + 1);
    assert.equal(used.size, 2, 'every nonce that expired by now is gone');
    assert.equal(used.has(nonce(3), NOW + 13), false);
  });

  it('never drops an entry that is still valid', () => {
    const used = new UsedNonces();
    for (let exp = NOW; exp < NOW + 100; exp++) used.use(nonce(exp - NOW), exp, NOW);
    for (let t = NOW; t < NOW + 100; t++) {
      used.use(nonce(100_000 + t - NOW), NOW + 100_000, t); // advance the clock
      for (let exp = t; exp < NOW + 100; exp++) assert.equal(used.has(nonce(exp - NOW), exp), true, `expiry +${exp - NOW} at +${t - NOW}`);
    }
  });

  it('is bounded by the validity window: a steady stream keeps a steady size', () => {
    const used = new UsedNonces();
    const ttl = 300;
    const sizes: number[] = [];
    for (let t = 0; t < 3000; t++) {
      assert.equal(used.use(nonce(t), NOW + t + ttl, NOW + t), true);
      if (t % 500 === 499) sizes.push(used.size);
    }
    // One nonce per second, valid 300 s: never more than the window plus one sweep bucket.
    for (const s of sizes) assert.ok(s <= ttl + 32, `size ${s}`);
    assert.ok(sizes.every((s) => s === sizes[1] || Math.abs(s - sizes[1]!) <= 16), `sizes ${sizes.join(', ')}`);
  });

  it('refuses new nonces when full, and accepts again once entries expire', () => {
    const used = new UsedNonces(10);
    for (let i = 0; i < 10; i++) assert.equal(used.use(nonce(i), NOW + 100, NOW), true);
    assert.equal(used.size, 10);
    assert.equal(used.use(nonce(10), NOW + 100, NOW), false, 'full: a fresh nonce is refused, the device must fetch another');
    assert.equal(used.use(nonce(10), NOW + 100, NOW + 50), false, 'still full while all entries are valid');
    assert.equal(used.use(nonce(3), NOW + 100, NOW + 50), false, 'a used nonce stays used when full');
    assert.equal(used.size, 10);
    assert.equal(used.use(nonce(10), NOW + 400, NOW + 200), true, 'after expiry there is room again');
    assert.equal(used.size, 1);
  });
});

describe('used-once nonce set: fingerprints in typed arrays (issue 17)', () => {
  const SECRET = Buffer.alloc(32, 9);

  it('accepts each of 20,000 real nonces of one time bucket once, past several table growths, and refuses every replay', () => {
    const used = new UsedNonces();
    const exp = NOW + 300;
    const issued = Array.from({ length: 20_000 }, (_, i) => makeNonce(SECRET, `dev-${i % 50}`, exp, randomBytes(8), '192.0.2.1:5683'));
    for (const n of issued) assert.equal(used.use(n, exp, NOW), true);
    assert.equal(used.size, 20_000);
    for (const n of issued) assert.equal(used.has(n, exp), true);
    for (const n of issued) assert.equal(used.use(Buffer.from(n), exp, NOW + 1), false, 'a replay (a copy of the bytes) is refused');
    assert.equal(used.size, 20_000);
  });

  it('tells apart nonces that differ in any one byte of their MAC part', () => {
    const used = new UsedNonces();
    const exp = NOW + 300;
    const base = makeNonce(SECRET, 'dev-1', exp, Buffer.alloc(8, 1));
    assert.equal(used.use(base, exp, NOW), true);
    for (let i = 16; i < 24; i++) {
      const other = Buffer.from(base);
      other[i] = other[i]! ^ 0x01;
      assert.equal(used.has(other, exp), false, `byte ${i}`);
      assert.equal(used.use(other, exp, NOW), true, `byte ${i}`);
    }
    assert.equal(used.size, 9);
  });

  it('remembers the all-zero fingerprint and short nonces as themselves', () => {
    const used = new UsedNonces();
    const exp = NOW + 300;
    assert.equal(used.use(Buffer.alloc(24), exp, NOW), true);
    assert.equal(used.has(Buffer.alloc(24), exp), true);
    assert.equal(used.use(Buffer.alloc(24), exp, NOW), false);
    assert.equal(used.use(Buffer.from([1]), exp, NOW), true);
    assert.equal(used.use(Buffer.from([0, 1]), exp, NOW), true, 'another length is another nonce');
    assert.equal(used.use(Buffer.from([1]), exp, NOW), false);
    assert.equal(used.size, 3);
  });
});

describe('the used-once set in two parts (issue #11, F3)', () => {
  it('fills each part on its own: a full part for unvouched requests leaves room for vouched ones', () => {
    const used = new PartitionedNonces({ vouched: 5, other: 3 });
    for (let i = 0; i < 3; i++) assert.deepEqual(used.use(nonce(i), NOW + 100, NOW, 'other'), { ok: true });
    const full = used.use(nonce(3), NOW + 100, NOW, 'other');
    assert.equal(full.ok, false);
    assert.equal(!full.ok && full.why, 'full');
    assert.ok(!full.ok && full.why === 'full' && full.retryS >= 1 && full.retryS <= 100 + 16, JSON.stringify(full));
    for (let i = 10; i < 15; i++) assert.deepEqual(used.use(nonce(i), NOW + 100, NOW, 'vouched'), { ok: true });
    assert.deepEqual(used.sizes, { vouched: 5, other: 3 });
  });

  it('never accepts a nonce twice across the parts', () => {
    const used = new PartitionedNonces({ vouched: 5, other: 5 });
    assert.ok(used.use(nonce(1), NOW + 100, NOW, 'other').ok);
    assert.deepEqual(used.use(nonce(1), NOW + 100, NOW, 'vouched'), { ok: false, why: 'used' });
    assert.ok(used.use(nonce(2), NOW + 100, NOW, 'vouched').ok);
    assert.deepEqual(used.use(nonce(2), NOW + 100, NOW, 'other'), { ok: false, why: 'used' });
    assert.equal(used.has(nonce(1), NOW + 100) && used.has(nonce(2), NOW + 100), true);
  });

  it('says when a full part makes room: once its earliest entries expire', () => {
    const used = new UsedNonces(2);
    used.use(nonce(1), NOW + 40, NOW);
    used.use(nonce(2), NOW + 300, NOW);
    const wait = used.freesInS(NOW);
    assert.ok(wait >= 40 && wait <= 40 + 16, `${wait}`);
    assert.equal(used.use(nonce(3), NOW + 300, NOW + wait), true, 'room again after that wait');
  });
});

describe('per-device mutex', () => {
  it('runs work for the same key one at a time, in arrival order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const gate = deferred();
    const a = m.run('dev-1', async () => {
      log.push('a start');
      await gate.promise;
      log.push('a end');
      return 'a';
    });
    const b = m.run('dev-1', async () => {
      log.push('b start');
      return 'b';
    });
    const c = m.run('dev-1', async () => {
      log.push('c start');
      return 'c';
    });
    await settle();
    assert.deepEqual(log, ['a start'], 'b and c wait for a');
    gate.resolve();
    assert.deepEqual(await Promise.all([a, b, c]), ['a', 'b', 'c']);
    assert.deepEqual(log, ['a start', 'a end', 'b start', 'c start']);
  });

  it('runs work for different keys concurrently', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    let otherRan = false;
    const a = m.run('dev-1', () => gate.promise);
    const b = m.run('dev-2', async () => {
      otherRan = true;
    });
    await b;
    assert.equal(otherRan, true, 'dev-2 did not wait for dev-1');
    gate.resolve();
    await a;
  });

  it('keeps serving a key after a task for it fails, and passes the failure to that caller only', async () => {
    const m = new KeyedMutex();
    const failing = m.run('dev-1', async () => {
      throw new Error('boom');
    });
    const next = m.run('dev-1', async () => 'next');
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'next');
  });

  it('forgets a key once its work is done, so its map does not grow', async () => {
    const m = new KeyedMutex();
    const runs: Array<Promise<unknown>> = [];
    for (let i = 0; i < 1000; i++) runs.push(m.run(`dev-${i % 100}`, async () => i));
    runs.push(m.run('dev-x', async () => Promise.reject(new Error('x'))).catch(() => undefined));
    assert.ok(m.size <= 101);
    await Promise.all(runs);
    await settle();
    assert.equal(m.size, 0);
  });

  it('keeps the key while later work is still queued behind finished work', async () => {
    const m = new KeyedMutex();
    const gate = deferred();
    const first = m.run('dev-1', async () => 1);
    const second = m.run('dev-1', () => gate.promise);
    await first;
    await settle();
    assert.equal(m.size, 1);
    gate.resolve();
    await second;
    await settle();
    assert.equal(m.size, 0);
  });
});
