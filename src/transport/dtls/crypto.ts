/**
 * DTLS 1.2 cryptography on `node:crypto`: the TLS 1.2 PRF (RFC 5246 §5), master secret with the
 * extended master secret (RFC 7627 §4), key expansion (RFC 5246 §6.3), AEAD record protection with
 * AES-128-CCM_8 (RFC 6655 §3, RFC 7251) and AES-128-GCM (RFC 5288 §3), including the RFC 9146 §5
 * tls12_cid additional data, the stateless cookie (RFC 6347 §4.2.1) and the 64-entry anti-replay
 * window (RFC 6347 §4.1.2.6).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, timingSafeEqual, type CipherCCMTypes, type CipherGCMTypes } from 'node:crypto';
import { CT } from './wire.ts';

/** HMAC-SHA256's block size: a longer key is replaced by its hash (RFC 2104 §2). */
const HMAC_BLOCK = 64;

/**
 * P_SHA256 (RFC 5246 §5): PRF(secret, label, seed) truncated to `len` bytes.
 *
 * The key is hashed once up front in every case, and the hash used when the key is longer than
 * HMAC's block (RFC 2104 §2 does the same, but inside every one of the PRF's HMACs). The output is
 * unchanged; the cost no longer depends on whether a PSK premaster exceeds 64 bytes, so a device's
 * long secret cannot be told from an unknown identity's dummy key by time (issue 11 F11).
 */
export function prf(secret: Buffer, label: string, seed: Buffer, len: number): Buffer {
  const hashed = createHash('sha256').update(secret).digest();
  const key = secret.length > HMAC_BLOCK ? hashed : secret;
  const out = prfWithKey(key, Buffer.concat([Buffer.from(label, 'latin1'), seed]), len);
  hashed.fill(0);
  return out;
}

function prfWithKey(secret: Buffer, ls: Buffer, len: number): Buffer {
  const out = Buffer.allocUnsafe(len);
  let a = ls;
  let off = 0;
  while (off < len) {
    a = createHmac('sha256', secret).update(a).digest();
    const p = createHmac('sha256', secret).update(a).update(ls).digest();
    off += p.copy(out, off);
  }
  return out;
}

/** master_secret (RFC 5246 §8.1), or the extended master secret over `sessionHash` (RFC 7627 §4). */
export function masterSecret(preMaster: Buffer, clientRandom: Buffer, serverRandom: Buffer, sessionHash: Buffer | undefined): Buffer {
  return sessionHash !== undefined
    ? prf(preMaster, 'extended master secret', sessionHash, 48)
    : prf(preMaster, 'master secret', Buffer.concat([clientRandom, serverRandom]), 48);
}

/** PSK premaster (RFC 4279 §2): uint16 N, N zeros, uint16 N, psk. */
export function pskPreMaster(psk: Buffer): Buffer {
  const n = psk.length;
  const b = Buffer.alloc(4 + 2 * n);
  b.writeUInt16BE(n, 0);
  b.writeUInt16BE(n, 2 + n);
  psk.copy(b, 4 + n);
  return b;
}

/** The AEAD of a suite. */
export type AeadKind = 'ccm8' | 'gcm';

/** Key block for the AEAD suites: 16-byte keys, 4-byte implicit IVs (RFC 5246 §6.3, RFC 6655 §3). */
export interface KeyBlock {
  clientKey: Buffer;
  serverKey: Buffer;
  clientIv: Buffer;
  serverIv: Buffer;
}

export function keyBlock(master: Buffer, clientRandom: Buffer, serverRandom: Buffer): KeyBlock {
  const kb = prf(master, 'key expansion', Buffer.concat([serverRandom, clientRandom]), 40);
  return { clientKey: kb.subarray(0, 16), serverKey: kb.subarray(16, 32), clientIv: kb.subarray(32, 36), serverIv: kb.subarray(36, 40) };
}

/** verify_data of a Finished message (RFC 5246 §7.4.9): 12 bytes. */
export function finishedData(master: Buffer, label: 'client finished' | 'server finished', transcriptHash: Buffer): Buffer {
  return prf(master, label, transcriptHash, 12);
}

/** Constant-time equality of two byte strings (false when lengths differ). */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const PLACEHOLDER = Buffer.alloc(8, 0xff);

/**
 * One direction's record protection for epoch ≥ 1. The record payload is
 * explicit_nonce (8 = epoch‖seq, RFC 6347 §4.1.2.1) ‖ ciphertext ‖ tag (8 for CCM_8, 16 for GCM).
 */
export class RecordCipher {
  readonly tagLength: number;
  private readonly nonce = Buffer.alloc(12);

  constructor(
    readonly aead: AeadKind,
    private readonly key: Buffer,
    iv: Buffer,
  ) {
    this.tagLength = aead === 'ccm8' ? 8 : 16;
    iv.copy(this.nonce, 0, 0, 4);
  }

  /** Per-record expansion: explicit nonce + tag. */
  get overhead(): number {
    return 8 + this.tagLength;
  }

  private aad(type: number, version: number, epoch: number, seq: number, cid: Buffer | undefined, plainLen: number): Buffer {
    if (cid === undefined) {
      const a = Buffer.allocUnsafe(13);
      a.writeUInt16BE(epoch, 0);
      a.writeUIntBE(seq, 2, 6);
      a[8] = type;
      a.writeUInt16BE(version, 9);
      a.writeUInt16BE(plainLen, 11);
      return a;
    }
    // RFC 9146 §5: seq_num_placeholder ‖ tls12_cid ‖ cid_length ‖ tls12_cid ‖ version ‖ epoch ‖
    // sequence_number ‖ cid ‖ length_of_DTLSInnerPlaintext.
    const a = Buffer.allocUnsafe(8 + 3 + 2 + 2 + 6 + cid.length + 2);
    PLACEHOLDER.copy(a, 0);
    a[8] = CT.tls12Cid;
    a[9] = cid.length;
    a[10] = CT.tls12Cid;
    a.writeUInt16BE(version, 11);
    a.writeUInt16BE(epoch, 13);
    a.writeUIntBE(seq, 15, 6);
    cid.copy(a, 21);
    a.writeUInt16BE(plainLen, 21 + cid.length);
    return a;
  }

  /** Encrypt `plain` into a record payload. For CID records, `plain` is the DTLSInnerPlaintext. */
  seal(type: number, version: number, epoch: number, seq: number, cid: Buffer | undefined, plain: Buffer): Buffer {
    const out = Buffer.allocUnsafe(8 + plain.length + this.tagLength);
    out.writeUInt16BE(epoch, 0);
    out.writeUIntBE(seq, 2, 6);
    out.copy(this.nonce, 4, 0, 8);
    const aad = this.aad(type, version, epoch, seq, cid, plain.length);
    if (this.aead === 'ccm8') {
      const c = createCipheriv('aes-128-ccm' as CipherCCMTypes, this.key, this.nonce, { authTagLength: 8 });
      c.setAAD(aad, { plaintextLength: plain.length });
      const n = c.update(plain).copy(out, 8);
      c.final();
      c.getAuthTag().copy(out, 8 + n);
    } else {
      const c = createCipheriv('aes-128-gcm' as CipherGCMTypes, this.key, this.nonce);
      c.setAAD(aad);
      const n = c.update(plain).copy(out, 8);
      c.final();
      c.getAuthTag().copy(out, 8 + n);
    }
    return out;
  }

  /** Decrypt a record payload; undefined when too short or the tag does not verify. */
  open(type: number, version: number, epoch: number, seq: number, cid: Buffer | undefined, payload: Buffer): Buffer | undefined {
    const ctLen = payload.length - 8 - this.tagLength;
    if (ctLen < 0) return undefined;
    // The explicit nonce is the sender's choice (RFC 5288 §3); we use what is on the wire.
    payload.copy(this.nonce, 4, 0, 8);
    const ct = payload.subarray(8, 8 + ctLen);
    const tag = payload.subarray(8 + ctLen);
    const aad = this.aad(type, version, epoch, seq, cid, ctLen);
    try {
      if (this.aead === 'ccm8') {
        const d = createDecipheriv('aes-128-ccm' as CipherCCMTypes, this.key, this.nonce, { authTagLength: 8 });
        d.setAuthTag(tag);
        d.setAAD(aad, { plaintextLength: ctLen });
        const p = d.update(ct);
        d.final();
        return p;
      }
      const d = createDecipheriv('aes-128-gcm' as CipherGCMTypes, this.key, this.nonce);
      d.setAuthTag(tag);
      d.setAAD(aad);
      const p = d.update(ct);
      d.final();
      return p;
    } catch {
      return undefined;
    }
  }
}

/** Build DTLSInnerPlaintext (RFC 9146 §4): content ‖ real_type (no padding). */
export function innerPlaintext(type: number, content: Buffer): Buffer {
  const b = Buffer.allocUnsafe(content.length + 1);
  content.copy(b, 0);
  b[content.length] = type;
  return b;
}

/** Split DTLSInnerPlaintext: strip zero padding, the last non-zero byte is the type. */
export function splitInnerPlaintext(inner: Buffer): { type: number; content: Buffer } | undefined {
  let i = inner.length - 1;
  while (i >= 0 && inner[i] === 0) i--;
  if (i < 0) return undefined;
  return { type: inner[i]!, content: inner.subarray(0, i) };
}

/**
 * The anti-replay window (RFC 6347 §4.1.2.6): the highest sequence number seen and a 64-entry
 * bitmap below it, as a ring indexed by seq mod 64. Update only after the record authenticated.
 */
export class ReplayWindow {
  private max = -1;
  private readonly ring = new Uint8Array(64);

  /** True when `seq` is new (not seen, not older than the window). */
  check(seq: number): boolean {
    if (seq > this.max) return true;
    if (this.max - seq >= 64) return false;
    return this.ring[seq & 63] === 0;
  }

  /** Mark `seq` as received. Returns true when it advanced the highest number (RFC 9146 §6). */
  update(seq: number): boolean {
    if (seq > this.max) {
      const gap = seq - this.max;
      if (gap >= 64) this.ring.fill(0);
      else for (let s = this.max + 1; s < seq; s++) this.ring[s & 63] = 0;
      this.ring[seq & 63] = 1;
      this.max = seq;
      return true;
    }
    this.ring[seq & 63] = 1;
    return false;
  }

  get highest(): number {
    return this.max;
  }
}

/**
 * Stateless cookies (RFC 6347 §4.2.1): cookie = key id (1 byte) ‖ HMAC-SHA256(secret[id], client
 * address ‖ port ‖ ClientHello parameters)[0..16]. The secret rotates every `rotateMs`; cookies made
 * under the previous secret stay valid until the next rotation. Verifying costs one HMAC.
 */
export class CookieJar {
  private cur: Buffer;
  private prev: Buffer;
  private id = 0;
  private rotatedAt: number;

  constructor(
    private readonly random: (n: number) => Buffer,
    private readonly clock: () => number,
    private readonly rotateMs: number,
  ) {
    this.cur = random(32);
    this.prev = random(32);
    this.rotatedAt = clock();
  }

  private maybeRotate(): void {
    const now = this.clock();
    if (now - this.rotatedAt < this.rotateMs) return;
    const twice = now - this.rotatedAt >= 2 * this.rotateMs;
    this.prev = twice ? this.random(32) : this.cur;
    this.cur = this.random(32);
    this.id = (this.id + 1) & 0xff;
    this.rotatedAt = now;
  }

  private mac(secret: Buffer, id: number, addr: string, port: number, parts: Buffer[]): Buffer {
    const h = createHmac('sha256', secret);
    const p = Buffer.allocUnsafe(3);
    p[0] = id;
    p.writeUInt16BE(port, 1);
    h.update(p).update(addr, 'latin1');
    for (const x of parts) h.update(x);
    return h.digest().subarray(0, 16);
  }

  /**
   * Check a ClientHello's cookie. Returns true when it was made for these parameters under a live
   * secret, else the cookie to send in a HelloVerifyRequest. One HMAC in the common cases (no
   * cookie, or one under the current secret); two for a cookie under the previous secret.
   */
  check(cookie: Buffer, addr: string, port: number, parts: Buffer[]): true | Buffer {
    this.maybeRotate();
    const fresh = this.mac(this.cur, this.id, addr, port, parts);
    if (cookie.length === 17) {
      const id = cookie[0]!;
      if (id === this.id && timingSafeEqual(cookie.subarray(1), fresh)) return true;
      if (id === ((this.id + 255) & 0xff) && timingSafeEqual(cookie.subarray(1), this.mac(this.prev, id, addr, port, parts))) return true;
    }
    return Buffer.concat([Buffer.from([this.id]), fresh]);
  }
}
