/**
 * Sealing a token to the device's X25519 key (docs/spec/idprov-coap-v1.md §5): NaCl `crypto_box` with an ephemeral
 * key pair and a random 24-byte nonce — libsodium's `crypto_box_easy`, tweetnacl's `nacl.box`.
 */
import nacl from 'tweetnacl';
import { randomBytes } from 'node:crypto';

export interface Sealed {
  epk: Uint8Array;
  nonce: Uint8Array;
  box: Uint8Array;
}

/**
 * Seal `token` to `xk`. `ephemeralSecret` and `nonce` are for test vectors only; by default both are
 * fresh random values.
 */
export function sealToken(token: Uint8Array, xk: Uint8Array, ephemeralSecret?: Uint8Array, nonce?: Uint8Array): Sealed {
  const kp = ephemeralSecret ? nacl.box.keyPair.fromSecretKey(ephemeralSecret) : nacl.box.keyPair.fromSecretKey(randomBytes(32));
  const n = nonce ?? randomBytes(24);
  const box = nacl.box(token, n, xk, kp.secretKey);
  return { epk: kp.publicKey, nonce: n, box };
}

/** Open a sealed token with the device's X25519 secret key; undefined if it does not authenticate. */
export function openSealed(s: Sealed, xsk: Uint8Array): Uint8Array | undefined {
  return nacl.box.open(s.box, s.nonce, s.epk, xsk) ?? undefined;
}
