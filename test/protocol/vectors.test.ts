import assert from 'node:assert/strict';
import { hex, toHex } from '../support/bytes.ts';
import { V } from '../support/vectors.ts';
import { encodeSign1, parseSign1, protectedHeader, sigStructure } from '../../src/protocol/cose.ts';
import { encodeRequestBody, encodeResponse, parseRequestBody } from '../../src/protocol/messages.ts';
import { decodeClaims, encodeClaims, encodeKeySet } from '../../src/protocol/cwt.ts';
import { oobProof, verifyOobProof } from '../../src/protocol/oob.ts';
import { ed25519Sign, kidOf, privateKeyFromSeed, rawPublicKey } from '../../src/tokens/ed25519.ts';
import { openSealed, sealToken } from '../../src/tokens/seal.ts';
import { TokenKeyring } from '../../src/tokens/keyring.ts';

describe('protocol vectors from the independent implementation (docs/spec/idprov-coap-v1.md §2, §5)', () => {
  const devKey = privateKeyFromSeed(hex(V.device.ed25519_seed));
  const srvKey = privateKeyFromSeed(hex(V.server.ed25519_seed));

  it('derives the device and server public keys and the kid from the seeds', () => {
    assert.equal(toHex(rawPublicKey(devKey)), V.device.ed25519_pk);
    assert.equal(toHex(rawPublicKey(srvKey)), V.server.ed25519_pk);
    assert.equal(toHex(kidOf(hex(V.server.ed25519_pk))), V.server.kid);
  });

  it('computes the OOB proof byte for byte and verifies it', () => {
    const proof = oobProof(V.device.oob_secret_utf8, hex(V.nonce), hex(V.device.ed25519_pk));
    assert.equal(toHex(proof), V.oob_proof.hmac_sha256);
    assert.ok(verifyOobProof(V.device.oob_secret_utf8, hex(V.nonce), hex(V.device.ed25519_pk), proof));
    assert.ok(!verifyOobProof('label-code-7Q4k', hex(V.nonce), hex(V.device.ed25519_pk), proof));
  });

  it('encodes the request body, Sig_structure, signature and both envelopes byte for byte', () => {
    const body = encodeRequestBody({
      id: V.device.id,
      pk: hex(V.device.ed25519_pk),
      mac: hex(V.device.mac),
      nonce: hex(V.nonce),
      type: 0,
      xk: hex(V.device.x25519_pk),
      oob: hex(V.oob_proof.hmac_sha256),
    });
    assert.equal(toHex(body), V.request.body);
    const prot = protectedHeader();
    assert.equal(toHex(prot), V.request.protected);
    const ss = sigStructure(prot, body);
    assert.equal(toHex(ss), V.request.sig_structure);
    const sig = ed25519Sign(devKey, ss);
    assert.equal(toHex(sig), V.request.signature);
    assert.equal(toHex(encodeSign1(prot, body, sig, true)), V.request.cose_sign1_tagged);
    assert.equal(toHex(encodeSign1(prot, body, sig, false)), V.request.cose_sign1_untagged);
  });

  it('parses the tagged and untagged envelopes back into the same fields', () => {
    for (const env of [V.request.cose_sign1_tagged, V.request.cose_sign1_untagged]) {
      const s = parseSign1(hex(env));
      assert.equal(toHex(s.protectedBytes), V.request.protected);
      assert.equal(toHex(s.payload), V.request.body);
      assert.equal(toHex(s.signature), V.request.signature);
      const b = parseRequestBody(s.payload);
      assert.equal(b.id, V.device.id);
      assert.equal(toHex(b.mac!), V.device.mac);
      assert.equal(toHex(b.oob!), V.oob_proof.hmac_sha256);
    }
  });

  it('issues the vector token byte for byte with the server key', () => {
    const claims = {
      iss: 'idprov',
      sub: V.device.id,
      exp: Date.parse('2026-01-01T01:00:00Z') / 1000,
      iat: Date.parse('2026-01-01T00:00:00Z') / 1000,
      cti: hex('1011121314151617'),
      cnf: hex(V.device.ed25519_pk),
    };
    assert.equal(toHex(encodeClaims(claims)), V.token.payload);
    const ring = new TokenKeyring(
      [{ kid: V.server.kid, publicKey: hex(V.server.ed25519_pk), privateKey: srvKey.export({ format: 'der', type: 'pkcs8' }), createdAt: 0 }],
      3600,
    );
    const cwt = ring.issue(claims);
    assert.equal(toHex(cwt), V.token.cwt);
    assert.equal(cwt.length, V.token.length);
    const back = ring.verify(cwt, claims.iat + 10);
    assert.deepEqual(toHex(back.cnf), V.device.ed25519_pk);
    assert.deepEqual(decodeClaims(hex(V.token.payload)).sub, V.device.id);
    assert.equal(toHex(ring.keySet(claims.iat)), V.keyset);
  });

  it('encodes the key set byte for byte', () => {
    assert.equal(toHex(encodeKeySet([{ kid: hex(V.server.kid), x: hex(V.server.ed25519_pk) }])), V.keyset);
  });

  it('seals the token to xk and encodes the approved response byte for byte', () => {
    const sealed = sealToken(hex(V.token.cwt), hex(V.device.x25519_pk), hex(V.sealed.ephemeral_x25519_sk), hex(V.sealed.box_nonce));
    assert.equal(toHex(sealed.epk), V.sealed.epk);
    assert.equal(toHex(sealed.box), V.sealed.box);
    const body = encodeResponse({ status: 0, exp: Date.parse('2026-01-01T01:00:00Z') / 1000, ttl: 3600, sealed });
    assert.equal(toHex(body), V.sealed.approved_response_body);
    assert.equal(toHex(openSealed(sealed, hex(V.device.x25519_sk))!), V.token.cwt);
  });
});
