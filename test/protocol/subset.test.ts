import assert from 'node:assert/strict';
import { asTag, decodeCbor } from '../../src/protocol/cbor.ts';
import { parseRequestBody } from '../../src/protocol/messages.ts';
import { hex } from '../support/bytes.ts';

describe('the CBOR subset of idprov v1 (docs/protocol.md)', () => {
  it('refuses a map with a duplicate key, nested or not, definite or indefinite', () => {
    for (const h of ['a201010101', 'bf01010101ff', '81a2616101616102', 'a101a201010101']) {
      assert.throws(() => decodeCbor(hex(h)), { code: 'malformed' }, h);
    }
  });

  it('accepts equal values under different keys and equal keys in different maps', () => {
    assert.deepEqual(decodeCbor(hex('a201010201')), new Map([[1, 1], [2, 1]]));
    assert.equal((decodeCbor(hex('82a10101a10101')) as unknown[]).length, 2);
  });

  it('refuses {1: "a", 0x1801: "b"}: a longer-than-shortest integer key equals its shortest form (issue 11 F9)', () => {
    // Compared by encoded bytes, 0x01 and 0x1801 differed and the last value won.
    for (const h of ['a2016161 1801 6162', 'a2016161 190001 6162', 'a2016161 1a00000001 6162', 'a2016161 1b0000000000000001 6162', 'a2 20 6161 38 00 6162']) {
      assert.throws(() => decodeCbor(hex(h.replace(/ /g, ''))), { code: 'malformed', message: /duplicate map key/ }, h);
    }
  });

  it('compares array and map keys by value: definite equals indefinite, and key order inside a map does not matter', () => {
    for (const h of ['a2 820101 01 9f0101ff 02', 'a2 a201020304 0a a203040102 0b', 'a2 d81201 01 d9001201 02', 'a2 4101 01 5801 01 02']) {
      assert.throws(() => decodeCbor(hex(h.replace(/ /g, ''))), { code: 'malformed', message: /duplicate map key/ }, h);
    }
    // ...and different values stay different keys.
    assert.equal((decodeCbor(hex('a2a2010203040aa2040301020b')) as Map<unknown, unknown>).size, 2);
    assert.equal((decodeCbor(hex('a2820101018201020a')) as Map<unknown, unknown>).size, 2);
  });

  it('refuses text strings that are not valid UTF-8, so two invalid keys cannot both read as U+FFFD', () => {
    for (const h of ['a2 61ff 01 61fe 02', '61ff', '62c0af', '63eda080', 'a1 01 61 80']) {
      assert.throws(() => decodeCbor(hex(h.replace(/ /g, ''))), { code: 'malformed', message: /UTF-8/ }, h);
    }
    assert.equal(decodeCbor(hex('63e282ac')), '\u20ac');
  });

  it('reads a longer-than-shortest integer as its value everywhere, 8-byte heads included', () => {
    for (const h of ['01', '1801', '190001', '1a00000001', '1b0000000000000001']) assert.equal(decodeCbor(hex(h)), 1, h);
    for (const h of ['20', '3800', '3b0000000000000000']) assert.equal(decodeCbor(hex(h)), -1, h);
    assert.equal(decodeCbor(hex('1b00000000ffffffff')), 2 ** 32 - 1);
    assert.equal(decodeCbor(hex('3b00000000ffffffff')), -(2 ** 32));
    assert.equal(decodeCbor(hex('1b0000000100000000')), 2n ** 32n, 'from 2^32 on a bigint, as with the shortest head');
    assert.deepEqual(decodeCbor(hex('a11b00000000000000050a')), new Map([[5, 10]]), 'an 8-byte key reads as the number key');
    const [tagged, plain] = decodeCbor(hex('82d8121b00000000000000071b0000000000000008')) as unknown[];
    assert.deepEqual(asTag(tagged), { tag: 18, value: 7 }, 'inside a tag');
    assert.equal(plain, 8, 'inside an array');
  });

  it('accepts longer-than-shortest lengths and tag heads as their value', () => {
    assert.deepEqual([...(decodeCbor(hex('5800')) as Uint8Array)], []);
    assert.equal(decodeCbor(hex('780161')), 'a');
    assert.deepEqual(decodeCbor(hex('98020102')), [1, 2]);
    assert.deepEqual(decodeCbor(hex('b8010102')), new Map([[1, 2]]));
    assert.equal((decodeCbor(hex('d9001201')) as { tag: number }).tag, 18);
  });

  it('accepts a request body whose type key (5) is written with an 8-byte head, as the same body with a one-byte head', () => {
    const short = Buffer.concat([hex('a3016161025820'), Buffer.alloc(32), hex('0501')]);
    const long = Buffer.concat([hex('a3016161025820'), Buffer.alloc(32), hex('051b0000000000000001')]);
    assert.equal(parseRequestBody(short).type, 1);
    assert.equal(parseRequestBody(long).type, 1);
  });

  it('refuses a request body that names the device ID twice', () => {
    // {1: "a", 1: "b", 2: h'00…'} — which ID was signed for would be ambiguous
    const body = Buffer.concat([hex('a3016161016162025820'), Buffer.alloc(32)]);
    assert.throws(() => parseRequestBody(body), { code: 'malformed' });
  });
});
