/**
 * Stateless freshness nonces (docs/spec/idprov-coap-v1.md §3).
 *
 * Layout (24 bytes): `expiry (uint32 BE, epoch s) ‖ random (8) ‖ MAC (12)` where
 * MAC = first 12 bytes of HMAC-SHA256(secret, "idprov-nonce-v1" ‖ expiry ‖ random ‖ id).
 * Any server instance holding the same secret verifies it without per-request state; binding the id
 * makes a nonce issued to one device useless to another. The used-once set lives in the service.
 *
 * The service also binds each nonce to the source address it was sent to (`peer`, issue #11 F4):
 * MAC = first 12 bytes of HMAC-SHA256(secret, "idprov-nonce-v2" ‖ expiry ‖ random ‖ len(peer) ‖ peer ‖ id).
 * A valid nonce then shows that its sender receives datagrams at that address (like a DTLS cookie),
 * which a blind spoofer cannot: it never sees the nonces sent to the address it forges.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const NONCE_BYTES = 24;
const MAC_BYTES = 12;
const LABEL = Buffer.from('idprov-nonce-v1', 'ascii');
const LABEL_BOUND = Buffer.from('idprov-nonce-v2', 'ascii');

/** Why a nonce was refused. */
export type NonceFault = 'missing' | 'malformed' | 'foreign' | 'expired';

/**
 * The secrets of a rotation (`idprov nonce-secret rotate`): nonces are made with `current`; until
 * `previousUntil` (epoch s: the rotation plus one nonce lifetime) a nonce made with `previous` is
 * still accepted, so a device that fetched its nonce just before the rotation is not turned away.
 * Its holder may replace the fields at any time (a rotation picked up while running); every call
 * reads them afresh.
 */
export interface NonceSecrets {
  current: Uint8Array;
  previous?: Uint8Array | undefined;
  previousUntil?: number | undefined;
}

/** A bare secret, or a rotation's secrets. */
export type NonceKey = Uint8Array | NonceSecrets;

function currentOf(k: NonceKey): Uint8Array {
  return k instanceof Uint8Array ? k : k.current;
}

/**
 * The MAC input is laid out in one buffer and fed to the HMAC in one `update`: each update is a call
 * into C++, and a provisioning computes three of these MACs (issue 17: ≈ 4.1 → 3.8 µs per MAC on dist/, of which 2.5 are the HMAC object itself).
 */
function mac(secret: Uint8Array, head: Uint8Array, id: string, peer: string | undefined): Buffer {
  const idLen = Buffer.byteLength(id, 'utf8');
  let peerLen = 0;
  let longPeer: Buffer | undefined;
  if (peer !== undefined) {
    peerLen = Buffer.byteLength(peer, 'utf8');
    if (peerLen > 255) {
      // Cut at byte 255 as written, even inside a character (never an address: those are short).
      longPeer = Buffer.from(peer, 'utf8').subarray(0, 255);
      peerLen = 255;
    }
  }
  const label = peer === undefined ? LABEL : LABEL_BOUND;
  const msg = Buffer.allocUnsafe(label.length + head.length + (peer === undefined ? 0 : 1 + peerLen) + idLen);
  let at = label.copy(msg, 0);
  msg.set(head, at);
  at += head.length;
  if (peer !== undefined) {
    msg[at++] = peerLen;
    at += longPeer ? longPeer.copy(msg, at) : msg.write(peer, at, 'utf8');
  }
  msg.write(id, at, 'utf8');
  return createHmac('sha256', secret).update(msg).digest().subarray(0, MAC_BYTES);
}

/**
 * Make a nonce for `id` valid until `expiry` (epoch s).
 * @param random 8 fresh random bytes (passed in so that this stays pure and testable).
 * @param peer the canonical source address the nonce is sent to; when given, only a request from that
 *   address passes {@link checkNonce} with the same `peer`.
 */
export function makeNonce(secret: NonceKey, id: string, expiry: number, random: Uint8Array, peer?: string): Buffer {
  // Fewer than 8 bytes would leave uninitialised heap memory in a nonce sent on the wire.
  if (random.length < 8) throw new RangeError('makeNonce: random must hold 8 bytes');
  const out = Buffer.allocUnsafe(NONCE_BYTES);
  out.writeUInt32BE(expiry >>> 0, 0);
  out.set(random.subarray(0, 8), 4);
  out.set(mac(currentOf(secret), out.subarray(0, 12), id, peer), 12);
  return out;
}

/**
 * Check a nonce's MAC (constant time) and expiry. Returns undefined when valid, else the fault. A nonce
 * made for another `peer` (or with one, checked without) is `foreign`. With {@link NonceSecrets}, a
 * nonce made with the previous secret passes until `previousUntil`.
 */
export function checkNonce(secret: NonceKey, id: string, nonce: Uint8Array | undefined, now: number, peer?: string): NonceFault | undefined {
  if (!nonce) return 'missing';
  if (nonce.length !== NONCE_BYTES) return 'malformed';
  const head = nonce.subarray(0, 12);
  const given = nonce.subarray(12);
  if (!timingSafeEqual(mac(currentOf(secret), head, id, peer), given)) {
    const previous = secret instanceof Uint8Array || secret.previousUntil === undefined || now > secret.previousUntil ? undefined : secret.previous;
    if (previous === undefined || !timingSafeEqual(mac(previous, head, id, peer), given)) return 'foreign';
  }
  if (Buffer.from(nonce.buffer, nonce.byteOffset, 4).readUInt32BE(0) < now) return 'expired';
  return undefined;
}

/** The expiry encoded in a (valid) nonce. */
export function nonceExpiry(nonce: Uint8Array): number {
  return Buffer.from(nonce.buffer, nonce.byteOffset, 4).readUInt32BE(0);
}
