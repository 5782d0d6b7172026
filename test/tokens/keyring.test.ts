/**
 * Token keys and CWTs (docs/spec/idprov-coap-v1.md §5): issue, verify, expiry, unknown keys, rotation, the COSE_KeySet
 * of /idprov/keys and the JWKS of the admin sidecar. The clock is an argument.
 */
import assert from 'node:assert/strict';
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { hex, toHex } from '../support/bytes.ts';
import { V } from '../support/vectors.ts';
import { ROLE_OF_TYPE, type ClientType, type TokenKeyRecord } from '../../src/domain.ts';
import { ProvError } from '../../src/errors.ts';
import { decodeCbor, encodeCanonical } from '../../src/protocol/cbor.ts';
import { encodeSign1, parseSign1, sigStructure } from '../../src/protocol/cose.ts';
import { decodeClaims, decodeKeySet, encodeClaims, type TokenClaims } from '../../src/protocol/cwt.ts';
import { ed25519Sign, kidOf, privateKeyFromSeed } from '../../src/tokens/ed25519.ts';
import { TokenKeyring, newTokenKey } from '../../src/tokens/keyring.ts';

const NOW = 1_767_225_600;
const TTL = 3600;
const MAX_TTL = 30 * 86_400;
const DEVICE_PK = hex(V.device.ed25519_pk);

const claims = (over: Partial<TokenClaims> = {}): TokenClaims => ({
  iss: 'idprov',
  sub: 'dev-1',
  exp: NOW + TTL,
  iat: NOW,
  cti: hex('0001020304050607'),
  cnf: DEVICE_PK,
  ...over,
});

/** The vector server key as a record (deterministic). */
const vectorKey = (createdAt = NOW - 86_400): TokenKeyRecord => ({
  kid: V.server.kid,
  publicKey: hex(V.server.ed25519_pk),
  privateKey: privateKeyFromSeed(hex(V.server.ed25519_seed)).export({ format: 'der', type: 'pkcs8' }),
  createdAt,
});

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ProvError, `threw ${String(e)}`);
    return e.code;
  }
  assert.fail('did not throw');
}

describe('token keyring (docs/spec/idprov-coap-v1.md §5)', () => {
  describe('issue and verify', () => {
    const ring = new TokenKeyring([vectorKey()], MAX_TTL);

    it('verifies a token it issued and returns its claims', () => {
      const c = claims({ aud: 'hub' });
      const back = ring.verify(ring.issue(c), NOW + 10);
      assert.deepEqual({ ...back, cti: toHex(back.cti), cnf: toHex(back.cnf) }, { ...c, cti: toHex(c.cti), cnf: toHex(c.cnf) });
    });

    it('signs with protected {1: -8, 4: kid} and the kid is the first 8 bytes of SHA-256 of the public key', () => {
      const s = parseSign1(ring.issue(claims()));
      const hdr = decodeCbor(s.protectedBytes) as Map<number, unknown>;
      assert.deepEqual([...hdr.keys()], [1, 4]);
      assert.equal(hdr.get(1), -8);
      assert.equal(toHex(s.kid!), V.server.kid);
      assert.equal(toHex(kidOf(hex(V.server.ed25519_pk))), V.server.kid);
    });

    it('issues an untagged COSE_Sign1 in deterministic CBOR, so equal claims give equal tokens', () => {
      const a = ring.issue(claims());
      assert.equal(a[0], 0x84);
      assert.equal(toHex(ring.issue(claims())), toHex(a));
    });

    for (const type of [0, 1, 2] as ClientType[]) {
      it(`${ROLE_OF_TYPE[type] ? `carries role "${ROLE_OF_TYPE[type]}"` : 'carries no role claim'} for client type ${type}`, () => {
        const role = ROLE_OF_TYPE[type];
        const token = ring.issue(claims(role ? { role } : {}));
        const payload = decodeCbor(parseSign1(token).payload) as Map<number | string, unknown>;
        assert.equal(payload.get('role'), role);
        assert.equal(payload.has('role'), role !== undefined);
        assert.equal(ring.verify(token, NOW).role, role);
      });
    }

    it('maps client types to roles as docs/spec/idprov-coap-v1.md §5 says: absent, "service", "consumer"', () => {
      assert.deepEqual([ROLE_OF_TYPE[0], ROLE_OF_TYPE[1], ROLE_OF_TYPE[2]], [undefined, 'service', 'consumer']);
    });

    it('refuses an expired token as token-expired, from its exp second on', () => {
      const t = ring.issue(claims());
      assert.equal(ring.verify(t, NOW + TTL - 1).sub, 'dev-1');
      assert.equal(code(() => ring.verify(t, NOW + TTL)), 'token-expired');
      assert.equal(code(() => ring.verify(t, NOW + TTL + 86_400)), 'token-expired');
    });

    it('refuses a token signed by a key it does not know as unknown-token-key', () => {
      const other = new TokenKeyring([newTokenKey(NOW)], MAX_TTL);
      assert.equal(code(() => ring.verify(other.issue(claims()), NOW)), 'unknown-token-key');
    });

    it('refuses a token without a kid as unknown-token-key', () => {
      const key = privateKeyFromSeed(hex(V.server.ed25519_seed));
      const prot = encodeCanonical(new Map([[1, -8]]));
      const payload = encodeClaims(claims());
      const t = encodeSign1(prot, payload, ed25519Sign(key, sigStructure(prot, payload)));
      assert.equal(code(() => ring.verify(t, NOW)), 'unknown-token-key');
    });

    it('refuses a forged signature under a known kid as unknown-token-key', () => {
      const t = ring.issue(claims());
      const s = parseSign1(t);
      const forged = Buffer.from(s.signature);
      forged[0] = forged[0]! ^ 1;
      assert.equal(code(() => ring.verify(encodeSign1(s.protectedBytes, s.payload, forged), NOW)), 'unknown-token-key');
      // A valid signature by another key, relabelled with this ring's kid.
      const other = new TokenKeyring([newTokenKey(NOW)], MAX_TTL);
      const os = parseSign1(other.issue(claims()));
      const relabelled = encodeSign1(s.protectedBytes, os.payload, os.signature);
      assert.equal(code(() => ring.verify(relabelled, NOW)), 'unknown-token-key');
    });

    it('refuses a token whose payload was changed after signing', () => {
      const s = parseSign1(ring.issue(claims()));
      const longer = encodeClaims(claims({ exp: NOW + 10 * TTL }));
      assert.equal(code(() => ring.verify(encodeSign1(s.protectedBytes, longer, s.signature), NOW)), 'unknown-token-key');
      const otherSub = encodeClaims(claims({ sub: 'dev-2' }));
      assert.equal(code(() => ring.verify(encodeSign1(s.protectedBytes, otherSub, s.signature), NOW)), 'unknown-token-key');
      // Flipping any byte of the token is refused with a stable code.
      const t = ring.issue(claims());
      for (let i = 0; i < t.length; i++) {
        const m = Buffer.from(t);
        m[i] = m[i]! ^ 0x40;
        assert.ok(['malformed', 'unknown-token-key', 'token-expired'].includes(code(() => ring.verify(m, NOW))), `byte ${i}`);
      }
    });

    it('refuses bytes that are not a token as malformed', () => {
      for (const bad of ['', '00', 'a0', '80', V.keyset]) assert.equal(code(() => ring.verify(hex(bad), NOW)), 'malformed', bad);
    });

    it('refuses a well-signed token whose claims are malformed as malformed', () => {
      const key = privateKeyFromSeed(hex(V.server.ed25519_seed));
      const prot = encodeCanonical(new Map<number, number | Uint8Array>([[1, -8], [4, hex(V.server.kid)]]));
      const payload = encodeCanonical(new Map<number, string>([[1, 'idprov']]));
      const t = encodeSign1(prot, payload, ed25519Sign(key, sigStructure(prot, payload)));
      assert.equal(code(() => ring.verify(t, NOW)), 'malformed');
    });
  });

  describe('token size', () => {
    it('keeps a device token with a 16-character ID and an 8-byte cti at most 180 bytes', () => {
      const ring = new TokenKeyring([newTokenKey(NOW)], MAX_TTL);
      const t = ring.issue(claims({ sub: 'esp32-a1b2c3d4e5', cti: hex('0011223344556677') }));
      assert.equal('esp32-a1b2c3d4e5'.length, 16);
      console.log(`      token size: ${t.length} bytes (16-character ID, 8-byte cti, iss "idprov", no aud)`);
      assert.ok(t.length <= 180, `${t.length} bytes`);
      assert.equal(V.token.length, 173);
    });

    it('stays within the 512 bytes a refresh may present, even with a service role, an audience and a 16-byte cti', () => {
      const ring = new TokenKeyring([newTokenKey(NOW)], MAX_TTL);
      const t = ring.issue(claims({ sub: 'd'.repeat(64), aud: 'coaps://hub.example.org:5684', role: 'consumer', cti: hex('00112233445566778899aabbccddeeff'), exp: 2 ** 32 - 1 }));
      assert.ok(t.length <= 512, `${t.length} bytes`);
    });
  });

  describe('rotation', () => {
    // The old key signed until T1; the new key signs from then on.
    const T1 = NOW + 1000;
    const old = { ...vectorKey(NOW - 86_400) };
    const fresh = newTokenKey(T1);
    const before = new TokenKeyring([old], MAX_TTL);
    const oldToken = before.issue(claims({ iat: T1 - 10, exp: T1 + MAX_TTL + 500 })); // exp beyond the window on purpose
    const after = new TokenKeyring([old], MAX_TTL);
    after.load([fresh, { ...old, retiredAt: T1 }]);

    it('signs new tokens with the new key once the old one is retired', () => {
      assert.equal(after.current.kid, fresh.kid);
      assert.equal(toHex(parseSign1(after.issue(claims())).kid!), fresh.kid);
      assert.equal(after.verify(after.issue(claims({ iat: T1, exp: T1 + TTL })), T1 + 1).sub, 'dev-1');
    });

    it('loads records in any order and picks the newest unretired key to sign', () => {
      const r = new TokenKeyring([{ ...old, retiredAt: T1 }, fresh], MAX_TTL);
      assert.equal(r.current.kid, fresh.kid);
      const r2 = new TokenKeyring([fresh, old], MAX_TTL);
      assert.equal(r2.current.kid, fresh.kid, 'newest first even when neither is retired');
    });

    it('lists the signing key first in the key set and the JWKS when it was made in the same second as the key it replaced', () => {
      const a = newTokenKey(T1);
      const b = newTokenKey(T1);
      const [first, second] = a.kid < b.kid ? [a, b] : [b, a];
      // The key sorting first by kid is the retired one: only the retirement can put the signer first.
      const r = new TokenKeyring([{ ...first, retiredAt: T1 }, second], MAX_TTL);
      assert.equal(r.current.kid, second.kid);
      assert.deepEqual(decodeKeySet(r.keySet(T1)).map((k) => toHex(k.kid)), [second.kid, first.kid]);
      assert.equal(r.jwks(T1).keys[0]!.kid, Buffer.from(second.kid, 'hex').toString('base64url'));
    });

    it('still verifies tokens of the retired key until retiredAt + the longest token lifetime', () => {
      assert.equal(after.verify(oldToken, T1 + 1).sub, 'dev-1');
      assert.equal(after.verify(oldToken, T1 + MAX_TTL - 1).sub, 'dev-1');
      assert.equal(code(() => after.verify(oldToken, T1 + MAX_TTL)), 'unknown-token-key');
    });

    it('lists both keys newest first in the key set, and drops the retired one after that time', () => {
      const ks = decodeKeySet(after.keySet(T1 + 1));
      assert.deepEqual(ks.map((k) => toHex(k.kid)), [fresh.kid, old.kid]);
      assert.deepEqual(ks.map((k) => toHex(k.x)), [toHex(fresh.publicKey), V.server.ed25519_pk]);
      assert.deepEqual(decodeKeySet(after.keySet(T1 + MAX_TTL - 1)).map((k) => toHex(k.kid)), [fresh.kid, old.kid]);
      assert.deepEqual(decodeKeySet(after.keySet(T1 + MAX_TTL)).map((k) => toHex(k.kid)), [fresh.kid]);
      assert.deepEqual(after.verificationKeys(T1 + MAX_TTL).map((k) => k.kid), [fresh.kid]);
    });

    it('encodes the key set as [{1: 1, 2: kid, 3: -8, -1: 6, -2: x}, …] and the vector key set byte for byte', () => {
      const entry = (decodeCbor(after.keySet(T1)) as Array<Map<number, unknown>>)[0]!;
      assert.deepEqual([...entry.keys()], [1, 2, 3, -1, -2]);
      assert.deepEqual([entry.get(1), entry.get(3), entry.get(-1)], [1, -8, 6]);
      assert.equal(toHex(new TokenKeyring([vectorKey()], MAX_TTL).keySet(NOW)), V.keyset);
    });

    it('creates key records whose kid matches their public key', () => {
      const k = newTokenKey(NOW);
      assert.equal(k.kid, toHex(kidOf(k.publicKey)));
      assert.equal(k.publicKey.length, 32);
      assert.equal(k.createdAt, NOW);
      assert.equal(k.retiredAt, undefined);
    });

    it('refuses to issue without any key', () => {
      assert.equal(code(() => new TokenKeyring([], MAX_TTL).issue(claims())), 'internal');
    });
  });

  describe('JWKS for the admin sidecar', () => {
    const T1 = NOW + 1000;
    const fresh = newTokenKey(T1);
    const ring = new TokenKeyring([fresh, { ...vectorKey(), retiredAt: T1 }], MAX_TTL);

    it('lists the same keys as the COSE_KeySet, newest first, with kid = base64url of the 8 kid bytes and x = the raw key', () => {
      const jwks = ring.jwks(T1 + 1);
      const ks = decodeKeySet(ring.keySet(T1 + 1));
      assert.equal(jwks.keys.length, ks.length);
      jwks.keys.forEach((j, i) => {
        assert.deepEqual([j.kty, j.crv, j.alg, j.use], ['OKP', 'Ed25519', 'EdDSA', 'sig']);
        assert.equal(j.kid, Buffer.from(ks[i]!.kid).toString('base64url'));
        assert.equal(Buffer.from(j.kid, 'base64url').length, 8);
        assert.equal(Buffer.from(j.x, 'base64url').toString('hex'), toHex(ks[i]!.x));
        assert.ok(!/[=+/]/.test(j.kid + j.x), 'unpadded base64url');
      });
      assert.equal(jwks.keys[1]!.kid, Buffer.from(V.server.kid, 'hex').toString('base64url'));
      assert.deepEqual(ring.jwks(T1 + MAX_TTL).keys.map((k) => k.kid), [Buffer.from(fresh.kid, 'hex').toString('base64url')]);
    });

    it('gives keys that verify the signature of a token (checked with node:crypto from the JWK)', () => {
      const token = ring.issue(claims());
      const s = parseSign1(token);
      const jwk = ring.jwks(NOW).keys.find((k) => k.kid === Buffer.from(s.kid!).toString('base64url'))!;
      const key = createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
      assert.ok(nodeVerify(null, sigStructure(s.protectedBytes, s.payload), key, s.signature));
      assert.equal(decodeClaims(s.payload).sub, 'dev-1');
    });
  });
});
