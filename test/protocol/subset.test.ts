import assert from 'node:assert/strict';
import { decodeCbor } from '../../src/protocol/cbor.ts';
import { parseRequestBody } from '../../src/protocol/messages.ts';
import { hex } from '../helpers.ts';

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

  it('refuses a request body that names the device ID twice', () => {
    // {1: "a", 1: "b", 2: h'00…'} — which ID was signed for would be ambiguous
    const body = Buffer.concat([hex('a3016161016162025820'), Buffer.alloc(32)]);
    assert.throws(() => parseRequestBody(body), { code: 'malformed' });
  });
});
