/**
 * One PSK failure path for every identity (issue 11 F11, RFC 4279 §2, RFC 7925 §4.2): an unknown
 * identity, a known one with a wrong key and an allowlisted one without a secret must not be told
 * apart, by the alert (all get `bad_record_mac` at the Finished) nor by the time to it. So for every
 * identity the same work runs: one HMAC-SHA256 over the identity under a per-server secret gives a
 * deterministic 32-byte dummy key, and the key used is a fresh copy of either the real PSK or that
 * dummy. The premaster, master secret, key block and Finished check that follow are the same
 * computations whatever the key (the PRF hashes its key once in every case, see `prf`), and every
 * comparison of secret bytes is constant-time (`timingSafeEqual`, AEAD tags in OpenSSL).
 */
import { createHmac } from 'node:crypto';

/** Length of the dummy key of an identity without a usable PSK (one HMAC-SHA256 output). */
export const DUMMY_PSK_LENGTH = 32;

/**
 * The key of a PSK identity (the device ID), or undefined: at once (an in-memory copy) or as a promise
 * (a store read; the connection holds the handshake's records meanwhile).
 */
export type PskLookup = (identity: string) => Buffer | undefined | Promise<Buffer | undefined>;

/** The key chosen for one PSK handshake. */
export interface PskChoice {
  /** A fresh buffer the caller may zero: the real PSK, or the identity's dummy key. */
  key: Buffer;
  /** True when `key` is the real PSK of the identity. */
  known: boolean;
}

/** Chooses the PSK of a handshake with the same computation for known and unknown identities. */
export class PskSelector {
  private readonly secret: Buffer;

  /** @param random the server's random source; 32 bytes of it key the dummy PSKs for its lifetime. */
  constructor(random: (n: number) => Buffer) {
    this.secret = random(32);
  }

  /**
   * The key for `identity` (raw bytes from the ClientKeyExchange) given the lookup's answer `psk`
   * (undefined or empty when there is none).
   */
  select(identity: Buffer, psk: Buffer | undefined): PskChoice {
    const dummy = createHmac('sha256', this.secret).update(identity).digest();
    const known = psk !== undefined && psk.length > 0;
    const key = Buffer.from(known ? psk : dummy);
    dummy.fill(0);
    return { key, known };
  }
}
