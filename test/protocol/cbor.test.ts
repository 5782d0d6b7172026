/**
 * encodeCanonical is core deterministic CBOR (RFC 8949 §4.2.1, docs/spec/idprov-coap-v1.md §2): the shortest head for
 * every integer and length, definite lengths, map keys sorted by the bytewise order of their encodings,
 * so that equal content gives equal bytes.
 */
import assert from 'node:assert/strict';
import { toHex } from '../support/bytes.ts';
import { prng } from '../support/mutation.ts';
import { CborTagged, asTag, decodeCbor, encodeCanonical, type CborValue } from '../../src/protocol/cbor.ts';

const enc = (v: CborValue): string => toHex(encodeCanonical(v));

/** Turn a decoded value back into an encodable one (cbor-x Tag → CborTagged). */
function fromDecoded(v: unknown): CborValue {
  if (Array.isArray(v)) return v.map(fromDecoded);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k as number | string, fromDecoded(x)]));
  if (v instanceof Uint8Array) return new Uint8Array(v);
  const t = asTag(v);
  if (t) return new CborTagged(t.tag, fromDecoded(t.value));
  return v as CborValue;
}

/** A random value the encoder accepts (integers, strings, bytes, arrays, maps, tag 18, simple values). */
function randomValue(rnd: () => number, depth = 0): CborValue {
  const pick = Math.floor(rnd() * (depth > 3 ? 6 : 9));
  const int = (): number => {
    const bits = Math.floor(rnd() * 53);
    const n = Math.floor(rnd() * 2 ** bits);
    return rnd() < 0.3 ? -n - 1 : n;
  };
  const text = (): string => Array.from({ length: Math.floor(rnd() * 30) }, () => String.fromCodePoint(rnd() < 0.8 ? 0x20 + Math.floor(rnd() * 95) : 0xa0 + Math.floor(rnd() * 0x3000))).join('');
  switch (pick) {
    case 0:
      return int();
    case 1:
      return rnd() < 0.5 ? BigInt(2 ** 32) + BigInt(Math.floor(rnd() * 2 ** 50)) * 1000n : -(BigInt(2 ** 32) + BigInt(Math.floor(rnd() * 2 ** 50)) * 1000n) - 1n;
    case 2:
      return text();
    case 3:
      return Uint8Array.from({ length: Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256));
    case 4:
      return [true, false, null][Math.floor(rnd() * 3)]!;
    case 5:
      return rnd() < 0.5 ? 23 + Math.floor(rnd() * 3) : 255 + Math.floor(rnd() * 3);
    case 6:
      return Array.from({ length: Math.floor(rnd() * 30) }, () => randomValue(rnd, depth + 1));
    case 7: {
      const m = new Map<number | string, CborValue>();
      const n = Math.floor(rnd() * 30);
      for (let i = 0; i < n; i++) m.set(rnd() < 0.6 ? int() : text(), randomValue(rnd, depth + 1));
      return m;
    }
    default:
      return new CborTagged(18, randomValue(rnd, depth + 1));
  }
}

function shuffledMap(m: ReadonlyMap<number | string, CborValue>, rnd: () => number): Map<number | string, CborValue> {
  const entries = [...m].map(([k, v]) => [k, v instanceof Map ? shuffledMap(v, rnd) : v] as [number | string, CborValue]);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
  return new Map(entries);
}

describe('canonical CBOR encoder (RFC 8949 §4.2.1)', () => {
  describe('shortest integer heads', () => {
    const cases: Array<[CborValue, string]> = [
      [0, '00'],
      [1, '01'],
      [23, '17'],
      [24, '1818'],
      [255, '18ff'],
      [256, '190100'],
      [65535, '19ffff'],
      [65536, '1a00010000'],
      [2 ** 32 - 1, '1affffffff'],
      [2 ** 32, '1b0000000100000000'],
      [Number.MAX_SAFE_INTEGER, '1b001fffffffffffff'],
      [-1, '20'],
      [-24, '37'],
      [-25, '3818'],
      [-256, '38ff'],
      [-257, '390100'],
      [-65536, '39ffff'],
      [-65537, '3a00010000'],
      [-(2 ** 32), '3affffffff'],
      [-(2 ** 32) - 1, '3b0000000100000000'],
      [Number.MIN_SAFE_INTEGER, '3b001ffffffffffffe'],
      [0n, '00'],
      [23n, '17'],
      [24n, '1818'],
      [2n ** 32n - 1n, '1affffffff'],
      [2n ** 32n, '1b0000000100000000'],
      [2n ** 64n - 1n, '1bffffffffffffffff'],
      [-1n, '20'],
      [-(2n ** 32n), '3affffffff'],
      [-(2n ** 32n) - 1n, '3b0000000100000000'],
      [-(2n ** 64n), '3bffffffffffffffff'],
    ];
    for (const [v, h] of cases) {
      it(`encodes ${typeof v === 'bigint' ? `${v}n` : v} as ${h}`, () => {
        assert.equal(enc(v), h);
      });
    }

    it('encodes a number and the equal bigint to the same bytes', () => {
      for (const [v] of cases) if (typeof v === 'number') assert.equal(enc(BigInt(v)), enc(v));
    });

    it('refuses integers outside the CBOR range and numbers that are not safe integers', () => {
      assert.throws(() => encodeCanonical(2n ** 64n), RangeError);
      assert.throws(() => encodeCanonical(-(2n ** 64n) - 1n), RangeError);
      for (const bad of [1.5, -0.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53)]) assert.throws(() => encodeCanonical(bad), RangeError, String(bad));
    });
  });

  describe('shortest length heads', () => {
    for (const [len, h] of [
      [0, '00'],
      [23, '17'],
      [24, '1818'],
      [255, '18ff'],
      [256, '190100'],
      [65535, '19ffff'],
      [65536, '1a00010000'],
    ] as Array<[number, string]>) {
      const headOf = (major: number) => (parseInt(h.slice(0, 2).padStart(2, '0'), 16) | (major << 5)).toString(16).padStart(2, '0') + h.slice(2);
      it(`writes the head of byte strings, text strings, arrays and maps of length ${len} as ${h.padStart(2, '0')} (major type in the top bits)`, () => {
        assert.ok(enc(new Uint8Array(len)).startsWith(headOf(2)));
        assert.equal(encodeCanonical(new Uint8Array(len)).length, headOf(2).length / 2 + len);
        assert.ok(enc('a'.repeat(len)).startsWith(headOf(3)));
        if (len <= 65536) assert.ok(enc(new Array<CborValue>(len).fill(0)).startsWith(headOf(4)));
        const m = new Map<number, CborValue>();
        for (let i = 0; i < len; i++) m.set(i, 0);
        assert.ok(enc(m).startsWith(headOf(5)));
      });
    }

    it('counts text string length in UTF-8 bytes, not characters', () => {
      assert.equal(enc('ü'), '62c3bc');
      assert.equal(enc('世'), '63e4b896');
      assert.equal(enc('\u{1F600}'), '64f09f9880');
    });
  });

  describe('other items', () => {
    it('encodes false, true and null as f4, f5, f6', () => {
      assert.equal(enc([false, true, null]), '83f4f5f6');
    });

    it('encodes tag 18 with a one-byte head and larger tags with the shortest head', () => {
      assert.equal(enc(new CborTagged(18, [])), 'd280');
      assert.equal(enc(new CborTagged(23, 0)), 'd700');
      assert.equal(enc(new CborTagged(24, 0)), 'd81800');
      assert.equal(enc(new CborTagged(256, 0)), 'd9010000');
    });

    it('refuses values it cannot encode deterministically', () => {
      assert.throws(() => encodeCanonical(undefined as never), TypeError);
      assert.throws(() => encodeCanonical({ a: 1 } as never), TypeError);
      assert.throws(() => encodeCanonical((() => 1) as never), TypeError);
    });

    it('grows its buffer for large items without losing bytes', () => {
      const big = Uint8Array.from({ length: 70_000 }, (_, i) => i & 0xff);
      const out = encodeCanonical([big, 'x', big]);
      assert.equal(out.length, 1 + 5 + 70_000 + 2 + 5 + 70_000);
      assert.ok(out.subarray(6, 6 + 70_000).equals(big));
    });
  });

  describe('map key order', () => {
    it('sorts keys by their encoded bytes: unsigned before negative before text, shorter heads first', () => {
      const keys: Array<number | string> = ['aa', 'b', -25, 256, '', -1, 24, 0, 'a', 23, -24, 255, 10, 'z', -256, 1000];
      const m = new Map<number | string, CborValue>(keys.map((k) => [k, 0]));
      const back = decodeCbor(encodeCanonical(m)) as Map<number | string, unknown>;
      assert.deepEqual([...back.keys()], [0, 10, 23, 24, 255, 256, 1000, -1, -24, -25, -256, '', 'a', 'b', 'z', 'aa']);
    });

    it('orders the COSE_Key labels 1, -1, -2 as the token vector does', () => {
      assert.equal(enc(new Map<number, CborValue>([[-2, 0], [-1, 6], [1, 1]])), 'a3010120062100');
    });

    it('sorts the keys of nested maps too', () => {
      const inner = new Map<number | string, CborValue>([['role', 1], [3, 2], [-1, 3]]);
      assert.equal(enc(new Map<number, CborValue>([[8, inner], [1, 'x']])), 'a2016178' + '08a3' + '0302' + '2003' + '64726f6c6501');
    });

    it('gives equal bytes for equal content regardless of Map insertion order', () => {
      const rnd = prng(42);
      for (let i = 0; i < 300; i++) {
        const m = new Map<number | string, CborValue>();
        const n = 1 + Math.floor(rnd() * 20);
        for (let j = 0; j < n; j++) m.set(rnd() < 0.5 ? Math.floor(rnd() * 70_000) - 35_000 : `k${Math.floor(rnd() * 1000)}`, randomValue(rnd, 2));
        assert.equal(enc(shuffledMap(m, rnd)), enc(m));
      }
    });
  });

  describe('round trip through decodeCbor', () => {
    it('decodes what it encodes, and re-encodes the decoded value to the same bytes (1000 random values)', () => {
      const rnd = prng(7);
      let n = 0;
      for (let i = 0; i < 1000; i++) {
        const v = randomValue(rnd);
        const bytes = encodeCanonical(v);
        if (bytes.length > 4096) continue; // decodeCbor's input limit
        // Compared as hex: cbor-x caches a DataView on the Buffer it decodes, which deepEqual would see.
        assert.equal(toHex(encodeCanonical(fromDecoded(decodeCbor(bytes)))), toHex(bytes));
        n++;
      }
      assert.ok(n > 500);
    });

    it('reads integers back as numbers below 2^32 and as bigints from 2^32 on', () => {
      assert.equal(decodeCbor(encodeCanonical(2 ** 32 - 1)), 2 ** 32 - 1);
      assert.equal(decodeCbor(encodeCanonical(2 ** 32)), 2n ** 32n);
      assert.equal(decodeCbor(encodeCanonical(-(2 ** 32))), -(2 ** 32));
      assert.equal(decodeCbor(encodeCanonical(-(2 ** 32) - 1)), -(2n ** 32n) - 1n);
    });

    it('reads maps back with their integer and text keys and byte strings as bytes', () => {
      const back = decodeCbor(encodeCanonical(new Map<number | string, CborValue>([[1, Uint8Array.of(1, 2)], ['1', 'one']]))) as Map<unknown, unknown>;
      assert.ok(back instanceof Map);
      assert.deepEqual([...back.keys()], [1, '1']);
      assert.deepEqual([...(back.get(1) as Uint8Array)], [1, 2]);
      assert.equal(back.get('1'), 'one');
    });
  });
});
