/**
 * Key fingerprints (docs/spec/idprov-coap-v1.md §5): Crockford base32 of SHA-256(pk)[0..10] in four
 * groups of four, checked against the vector made outside the project (fixtures/vectors/idprov-v1.json,
 * Python); typed pins in any case, with spaces, O for 0 and I/L for 1, or in the old base64url format.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FINGERPRINT_ALPHABET, canonicalFingerprint, fingerprintMatches, keyFingerprint, keyFingerprintsIn, legacyKeyFingerprint } from '../../src/tokens/ed25519.ts';

const VEC = JSON.parse(readFileSync(new URL('../../fixtures/vectors/idprov-v1.json', import.meta.url), 'utf8')) as { device: { ed25519_pk: string; fingerprint: string; fingerprint_legacy: string } };
const PK = Buffer.from(VEC.device.ed25519_pk, 'hex');

/** Base32 of the bytes through a bit string (a second, naive encoder), in groups of four. */
function viaBitString(bytes: Buffer): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let s = '';
  for (let i = 0; i < bits.length; i += 5) s += FINGERPRINT_ALPHABET[parseInt(bits.slice(i, i + 5), 2)];
  return s.match(/.{4}/g)!.join('-');
}

describe('key fingerprints', () => {
  it('match the vector (made with Python) and the old format of the same key', () => {
    assert.equal(keyFingerprint(PK), VEC.device.fingerprint);
    assert.equal(legacyKeyFingerprint(PK), VEC.device.fingerprint_legacy);
  });

  it('are 16 symbols of Crockford base32 in groups of four, with none of I, L, O, U', () => {
    assert.equal(FINGERPRINT_ALPHABET.length, 32);
    assert.equal(new Set(FINGERPRINT_ALPHABET).size, 32);
    assert.doesNotMatch(FINGERPRINT_ALPHABET, /[ILOU]/);
    for (let i = 0; i < 200; i++) {
      const pk = randomBytes(32);
      const fp = keyFingerprint(pk);
      assert.match(fp, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
      assert.equal(fp, viaBitString(createHash('sha256').update(pk).digest().subarray(0, 10)));
    }
  });

  it('accept a typed pin in lower case, with spaces or without hyphens, O for 0 and I or L for 1', () => {
    const fp = VEC.device.fingerprint; // CPV0-CWYP-XP44-QW0W
    for (const typed of [fp, fp.toLowerCase(), fp.replace(/-/g, ' '), fp.replace(/-/g, ''), ` ${fp} `, 'cpvo-cwyp-xp44-qwow']) {
      assert.equal(canonicalFingerprint(typed), fp, typed);
      assert.ok(fingerprintMatches(PK, typed), typed);
    }
    const one = randomBytes(32);
    const withOne = keyFingerprint(one);
    if (withOne.includes('1')) assert.ok(fingerprintMatches(one, withOne.replace(/1/g, 'l')));
  });

  it('accept the old base64url fingerprint exactly as it was shown, and refuse other keys and junk', () => {
    assert.ok(fingerprintMatches(PK, VEC.device.fingerprint_legacy));
    assert.ok(!fingerprintMatches(PK, VEC.device.fingerprint_legacy.toLowerCase()), 'base64url is case sensitive');
    const other = randomBytes(32);
    assert.ok(!fingerprintMatches(other, VEC.device.fingerprint));
    assert.ok(!fingerprintMatches(other, VEC.device.fingerprint_legacy));
    for (const junk of ['', 'CPV0-CWYP-XP44', 'CPV0-CWYP-XP44-QW0W-0000', 'CPV0-CWYP-XP44-QW0U']) {
      assert.ok(!fingerprintMatches(PK, junk), junk);
    }
    assert.equal(canonicalFingerprint('CPV0-CWYP-XP44-QW0U'), undefined, 'U is not in the alphabet');
  });

  it('names the keys in a flag\'s evidence by their fingerprints, and nothing else', () => {
    const other = randomBytes(32);
    assert.deepEqual(keyFingerprintsIn({ expected: VEC.device.ed25519_pk, got: other.toString('hex'), source: '127.0.0.1:5683', mac: '240ac4123456' }), {
      expected: VEC.device.fingerprint,
      got: keyFingerprint(other),
    });
    assert.equal(keyFingerprintsIn({ source: '127.0.0.1:5683' }), undefined);
    assert.equal(keyFingerprintsIn(undefined), undefined);
  });
});
