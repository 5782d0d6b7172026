/**
 * Properties of the CBOR decoder under re-encoding (issue 11 F9), with the fuzzer's seeded generators:
 * any head written longer than its shortest form decodes to the same value, and a map whose two keys
 * differ only in head length is refused.
 */
import assert from 'node:assert/strict';
import { CborTagged, decodeCbor, encodeCanonical, type CborValue } from '../../src/protocol/cbor.ts';
import { cborSpans, lengthenHead } from '../../tools/fuzz/cbor-items.ts';
import { Rng } from '../../tools/fuzz/rng.ts';
import { same } from '../../tools/fuzz/targets/compare.ts';

function value(r: Rng, depth = 0): CborValue {
  switch (r.below(depth > 2 ? 4 : 7)) {
    case 0:
      return r.pick([0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -24, -25, -(2 ** 32), r.below(1000) - 500]);
    case 1:
      return r.chance(0.5) ? BigInt(2 ** 32) + BigInt(r.u32()) : -(BigInt(2 ** 32) + 1n + BigInt(r.u32()));
    case 2:
      return 'x'.repeat(r.below(30)) + r.pick(['', 'é', '€', '🙂']);
    case 3:
      return Buffer.alloc(r.below(40), r.below(256));
    case 4:
      return Array.from({ length: r.below(5) }, () => value(r, depth + 1));
    case 5: {
      const m = new Map<number | string, CborValue>();
      for (let i = r.below(5); i > 0; i--) m.set(r.chance(0.6) ? r.below(300) - 20 : `k${r.below(30)}`, value(r, depth + 1));
      return m;
    }
    default:
      return new CborTagged(18, value(r, depth + 1));
  }
}

/** `b` with each head lengthened with probability `p` (from the last item backwards, so offsets hold). */
function lengthenSome(b: Buffer, r: Rng, p: number): Buffer {
  let out = b;
  for (const s of cborSpans(b, 1 << 16).reverse()) {
    if (!r.chance(p)) continue;
    const head = lengthenHead(out, s);
    if (head) out = Buffer.concat([out.subarray(0, s.start), head, out.subarray(s.headEnd)]);
  }
  return out;
}

describe('CBOR read by value (issue 11 F9)', () => {
  it('decodes any longer-than-shortest rewriting of an item to the same value (600 random items)', () => {
    const r = new Rng(11);
    let changed = 0;
    for (let i = 0; i < 600; i++) {
      const canonical = encodeCanonical(value(r));
      const longer = lengthenSome(canonical, r, 0.4);
      if (!longer.equals(canonical)) changed++;
      assert.ok(same(decodeCbor(longer), decodeCbor(canonical)), `${canonical.toString('hex')} vs ${longer.toString('hex')}`);
    }
    assert.ok(changed > 250, `only ${changed} items were rewritten`);
  });

  it('refuses a map whose second key is the first one written longer (300 random maps)', () => {
    const r = new Rng(12);
    for (let i = 0; i < 300; i++) {
      const key = r.chance(0.5) ? r.below(70_000) - 35_000 : `k${r.below(1000)}`;
      const k = encodeCanonical(key);
      const longKey = lengthenSome(k, r, 1);
      const body = Buffer.concat([Buffer.from([0xa2]), k, encodeCanonical(value(r)), longKey, encodeCanonical(value(r))]);
      assert.throws(() => decodeCbor(body), { code: 'malformed', message: /duplicate map key/ }, body.toString('hex'));
    }
  });
});
