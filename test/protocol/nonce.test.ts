/**
 * Stateless freshness nonces (docs/spec/idprov-coap-v1.md §3): expiry ‖ random ‖ MAC over both and the device ID, so any
 * instance holding the secret verifies them without per-request state. The clock is an argument.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { toHex } from '../support/bytes.ts';
import { NONCE_BYTES, checkNonce, makeNonce, nonceExpiry } from '../../src/protocol/nonce.ts';

const SECRET = Buffer.alloc(32, 0x5e);
const OTHER_SECRET = Buffer.alloc(32, 0x5f);
const NOW = 1_767_225_600;
const RANDOM = Buffer.from('0001020304050607', 'hex');

describe('freshness nonces (docs/spec/idprov-coap-v1.md §3)', () => {
  const nonce = makeNonce(SECRET, 'dev-1', NOW + 300, RANDOM);

  it(`is ${NONCE_BYTES} bytes long: expiry, random and MAC, within the 8..32 bytes key 4 allows`, () => {
    assert.equal(nonce.length, NONCE_BYTES);
    assert.ok(NONCE_BYTES >= 8 && NONCE_BYTES <= 32);
    assert.equal(nonce.readUInt32BE(0), NOW + 300);
    assert.equal(toHex(nonce.subarray(4, 12)), toHex(RANDOM));
  });

  it('carries the MAC of the documented layout, unbound (v1) and bound to a peer (v2), for any ID and peer text', () => {
    // Computed here from the module comment's layout, independently of how nonce.ts feeds its HMAC.
    const expect = (id: string, peer?: string): string => {
      const head = Buffer.alloc(12);
      head.writeUInt32BE(NOW + 300, 0);
      RANDOM.copy(head, 4);
      const parts = [Buffer.from(peer === undefined ? 'idprov-nonce-v1' : 'idprov-nonce-v2', 'ascii'), head];
      if (peer !== undefined) {
        const p = Buffer.from(peer, 'utf8');
        parts.push(Buffer.from([Math.min(p.length, 255)]), p.subarray(0, 255));
      }
      parts.push(Buffer.from(id, 'utf8'));
      return toHex(Buffer.concat([head, createHmac('sha256', SECRET).update(Buffer.concat(parts)).digest().subarray(0, 12)]));
    };
    const long = `${'é'.repeat(127)}x${'é'.repeat(10)}`; // 265 bytes, cut inside a character at 255
    for (const [id, peer] of [['dev-1', undefined], ['dev-1', '127.0.0.1'], ['Gerät-ü', '2001:db8::1'], ['d', ''], ['dev-1', long], ['ĳ'.repeat(40), long]] as const) {
      assert.equal(toHex(makeNonce(SECRET, id, NOW + 300, RANDOM, peer)), expect(id, peer), `${id} ${peer ?? '(unbound)'}`);
      assert.equal(checkNonce(SECRET, id, makeNonce(SECRET, id, NOW + 300, RANDOM, peer), NOW, peer), undefined);
    }
  });

  it('is deterministic for the same secret, id, expiry and random bytes', () => {
    assert.equal(toHex(makeNonce(SECRET, 'dev-1', NOW + 300, RANDOM)), toHex(nonce));
  });

  it('reads back the expiry it carries', () => {
    assert.equal(nonceExpiry(nonce), NOW + 300);
    assert.equal(nonceExpiry(Buffer.concat([Buffer.alloc(3), nonce]).subarray(3)), NOW + 300);
  });

  it('is valid for its device from issue until and including its expiry second', () => {
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW), undefined);
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW + 299), undefined);
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW + 300), undefined);
  });

  it('is expired one second after its expiry', () => {
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW + 301), 'expired');
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW + 86_400), 'expired');
  });

  it('is foreign under another secret, as from a server instance that does not share it', () => {
    assert.equal(checkNonce(OTHER_SECRET, 'dev-1', nonce, NOW), 'foreign');
  });

  it('is accepted by another instance that shares the secret', () => {
    assert.equal(checkNonce(Buffer.from(SECRET), 'dev-1', nonce, NOW), undefined);
  });

  it('is foreign for another device ID, so a nonce issued to one device is useless to another', () => {
    for (const id of ['dev-2', 'dev-10', 'dev-', 'Dev-1', 'dev-1 ', 'x']) assert.equal(checkNonce(SECRET, id, nonce, NOW), 'foreign', id);
  });

  it('reports a forged nonce as foreign before looking at its expiry', () => {
    const later = Buffer.from(nonce);
    later.writeUInt32BE(NOW + 10_000, 0); // extend the expiry without the secret
    assert.equal(checkNonce(SECRET, 'dev-1', later, NOW + 5_000), 'foreign');
    const expiredForgery = Buffer.from(nonce);
    expiredForgery.writeUInt32BE(NOW - 10, 0);
    assert.equal(checkNonce(SECRET, 'dev-1', expiredForgery, NOW), 'foreign');
  });

  it('is foreign when any single bit is flipped', () => {
    for (let bit = 0; bit < NONCE_BYTES * 8; bit++) {
      const n = Buffer.from(nonce);
      n[bit >> 3] = n[bit >> 3]! ^ (1 << (bit & 7));
      assert.equal(checkNonce(SECRET, 'dev-1', n, NOW), 'foreign', `bit ${bit}`);
    }
  });

  it('is malformed when it is not exactly the nonce length', () => {
    for (const len of [0, 8, 16, 23, 25, 32]) assert.equal(checkNonce(SECRET, 'dev-1', Buffer.alloc(len), NOW), 'malformed', `${len} bytes`);
    assert.equal(checkNonce(SECRET, 'dev-1', nonce.subarray(0, 23), NOW), 'malformed');
    assert.equal(checkNonce(SECRET, 'dev-1', Buffer.concat([nonce, Buffer.alloc(1)]), NOW), 'malformed');
  });

  it('is missing when the request carries none', () => {
    assert.equal(checkNonce(SECRET, 'dev-1', undefined, NOW), 'missing');
  });

  it('checks a nonce that sits inside a larger buffer (as decoded from a request body)', () => {
    const body = Buffer.concat([Buffer.from('a1045818', 'hex'), nonce, Buffer.alloc(5)]);
    assert.equal(checkNonce(SECRET, 'dev-1', body.subarray(4, 4 + NONCE_BYTES), NOW), undefined);
  });

  it('never repeats: 10 000 nonces for the same device and expiry are all different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) seen.add(toHex(makeNonce(SECRET, 'dev-1', NOW + 300, randomBytes(8))));
    assert.equal(seen.size, 10_000);
  });

  it('refuses fewer than 8 random bytes instead of sending uninitialised memory', () => {
    for (const len of [0, 1, 7]) assert.throws(() => makeNonce(SECRET, 'dev-1', NOW, Buffer.alloc(len)), RangeError);
  });

  it('uses only the first 8 random bytes', () => {
    const longer = Buffer.concat([RANDOM, Buffer.from('ffff', 'hex')]);
    assert.equal(toHex(makeNonce(SECRET, 'dev-1', NOW + 300, longer)), toHex(nonce));
  });

  it('binds the source address when made for one: only that address can answer it (issue #11, F4)', () => {
    const bound = makeNonce(SECRET, 'dev-1', NOW + 300, RANDOM, '192.0.2.1');
    assert.equal(checkNonce(SECRET, 'dev-1', bound, NOW, '192.0.2.1'), undefined);
    for (const other of ['192.0.2.2', '192.0.2.10', '', '2001:0db8:0000:0000:0000:0000:0000:0001']) assert.equal(checkNonce(SECRET, 'dev-1', bound, NOW, other), 'foreign', other);
    assert.equal(checkNonce(SECRET, 'dev-1', bound, NOW), 'foreign', 'not valid unbound');
    assert.equal(checkNonce(SECRET, 'dev-1', nonce, NOW, '192.0.2.1'), 'foreign', 'an unbound nonce is not valid bound');
    assert.notEqual(toHex(bound.subarray(12)), toHex(makeNonce(SECRET, 'dev-1', NOW + 300, RANDOM, '192.0.2.11').subarray(12)));
    assert.equal(checkNonce(SECRET, '1dev-1', makeNonce(SECRET, 'dev-1', NOW + 300, RANDOM, '192.0.2.1'), NOW, '192.0.2.'), 'foreign', 'address and ID do not run together');
  });

  it('binds the full device ID, including non-ASCII characters', () => {
    const n = makeNonce(SECRET, 'gerät-1', NOW + 60, RANDOM);
    assert.equal(checkNonce(SECRET, 'gerät-1', n, NOW), undefined);
    assert.equal(checkNonce(SECRET, 'gerat-1', n, NOW), 'foreign');
  });

  describe('across a secret rotation', () => {
    const rotated = { current: OTHER_SECRET, previous: SECRET, previousUntil: NOW + 300 };

    it('makes new nonces with the current secret only', () => {
      const n = makeNonce(rotated, 'dev-1', NOW + 300, RANDOM);
      assert.equal(toHex(n), toHex(makeNonce(OTHER_SECRET, 'dev-1', NOW + 300, RANDOM)));
      assert.equal(checkNonce(SECRET, 'dev-1', n, NOW), 'foreign');
    });

    it('accepts a nonce of the previous secret until previousUntil, and only then', () => {
      assert.equal(checkNonce(rotated, 'dev-1', nonce, NOW), undefined);
      assert.equal(checkNonce(rotated, 'dev-1', nonce, NOW + 300), undefined);
      const late = makeNonce(SECRET, 'dev-1', NOW + 900, RANDOM);
      assert.equal(checkNonce(rotated, 'dev-1', late, NOW + 301), 'foreign', 'past previousUntil the old secret is gone');
      assert.equal(checkNonce({ current: OTHER_SECRET, previous: SECRET }, 'dev-1', nonce, NOW), 'foreign', 'no previousUntil: not accepted');
    });

    it('still binds a previous-secret nonce to its device and address, and still expires it', () => {
      const bound = makeNonce(SECRET, 'dev-1', NOW + 60, RANDOM, '192.0.2.1:5683');
      assert.equal(checkNonce(rotated, 'dev-1', bound, NOW, '192.0.2.1:5683'), undefined);
      assert.equal(checkNonce(rotated, 'dev-1', bound, NOW, '192.0.2.2:5683'), 'foreign');
      assert.equal(checkNonce(rotated, 'dev-2', bound, NOW, '192.0.2.1:5683'), 'foreign');
      assert.equal(checkNonce(rotated, 'dev-1', bound, NOW + 61, '192.0.2.1:5683'), 'expired');
    });
  });
});
