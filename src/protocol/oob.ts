/**
 * The out-of-band secret proof of docs/spec/idprov-coap-v1.md §2 key 7:
 * HMAC-SHA256(key = secret, msg = "idprov-oob-v1" ‖ nonce ‖ pk). Compared in constant time.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const OOB_LABEL = Buffer.from('idprov-oob-v1', 'ascii');

/** Compute the 32-byte OOB proof. */
export function oobProof(secret: string, nonce: Uint8Array, pk: Uint8Array): Buffer {
  return createHmac('sha256', Buffer.from(secret, 'utf8')).update(OOB_LABEL).update(nonce).update(pk).digest();
}

/** Verify a received proof in constant time. */
export function verifyOobProof(secret: string, nonce: Uint8Array, pk: Uint8Array, proof: Uint8Array): boolean {
  if (proof.length !== 32) return false;
  return timingSafeEqual(oobProof(secret, nonce, pk), proof);
}
