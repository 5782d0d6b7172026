/**
 * Token keys and CWTs (docs/spec/idprov-coap-v1.md §5): issue with the current key, verify with any key that can still
 * verify an unexpired token, export the COSE_KeySet and a JWKS. Pure computation: keys come in as
 * records, the clock comes in as an argument.
 */
import type { KeyObject } from 'node:crypto';
import type { TokenKeyRecord } from '../domain.ts';
import { ProvError } from '../errors.ts';
import { encodeSign1, parseSign1, protectedHeader, sigStructure } from '../protocol/cose.ts';
import { decodeClaims, encodeClaims, encodeKeySet, type TokenClaims } from '../protocol/cwt.ts';
import { PublicKeyCache, ed25519Sign, ed25519Verify, generateEd25519, kidOf } from './ed25519.ts';
import { createPrivateKey } from 'node:crypto';

interface LoadedKey {
  record: TokenKeyRecord;
  kid: Buffer;
  privateKey: KeyObject;
  protectedBytes: Buffer;
}

/** A JSON Web Key for an Ed25519 token key (RFC 8037). */
export interface Ed25519Jwk {
  kty: 'OKP';
  crv: 'Ed25519';
  alg: 'EdDSA';
  use: 'sig';
  kid: string;
  x: string;
}

/** Create a new token key record (PKCS#8 private key, raw public key, kid). */
export function newTokenKey(now: number): TokenKeyRecord {
  const { privateKey, publicRaw } = generateEd25519();
  return {
    kid: kidOf(publicRaw).toString('hex'),
    publicKey: publicRaw,
    privateKey: privateKey.export({ format: 'der', type: 'pkcs8' }),
    createdAt: now,
  };
}

export class TokenKeyring {
  private keys: LoadedKey[] = [];
  private readonly byKid = new Map<string, LoadedKey>();
  private readonly pkCache = new PublicKeyCache(64);

  /**
   * @param maxTokenTtl the longest token lifetime issued (s): a retired key stays in the key set until
   *   every token it signed has expired.
   */
  constructor(records: readonly TokenKeyRecord[], private readonly maxTokenTtl: number) {
    this.load(records);
  }

  /**
   * Replace the key set (after a rotation). Records in any order; the newest unretired key signs and is
   * kept first, then the rest newest first — also when a rotation happens within the second the
   * previous key was made in (the spec lists the signer first in `/idprov/keys`).
   */
  load(records: readonly TokenKeyRecord[]): void {
    const retired = (r: TokenKeyRecord): number => (r.retiredAt === undefined ? 0 : 1);
    const sorted = [...records].sort((a, b) => retired(a) - retired(b) || b.createdAt - a.createdAt || (a.kid < b.kid ? -1 : 1));
    this.keys = sorted.map((record) => {
      const kid = Buffer.from(record.kid, 'hex');
      return {
        record,
        kid,
        privateKey: createPrivateKey({ key: Buffer.from(record.privateKey), format: 'der', type: 'pkcs8' }),
        protectedBytes: protectedHeader(kid),
      };
    });
    this.byKid.clear();
    for (const k of this.keys) this.byKid.set(k.record.kid, k);
  }

  /** The signing key: the newest key that is not retired. */
  get current(): TokenKeyRecord {
    const k = this.keys.find((x) => x.record.retiredAt === undefined) ?? this.keys[0];
    if (!k) throw new ProvError('internal', 'no token signing key');
    return k.record;
  }

  /** Sign claims as a CWT (untagged COSE_Sign1, protected `{1: -8, 4: kid}`). */
  issue(claims: TokenClaims): Buffer {
    const key = this.byKid.get(this.current.kid)!;
    const payload = encodeClaims(claims);
    const sig = ed25519Sign(key.privateKey, sigStructure(key.protectedBytes, payload));
    return encodeSign1(key.protectedBytes, payload, sig);
  }

  /**
   * Verify a CWT: structure, kid known, signature, expiry. Returns the claims.
   * @throws ProvError `malformed` | `unknown-token-key` | `token-expired`.
   */
  verify(token: Uint8Array, now: number): TokenClaims {
    const s = parseSign1(token, 'token');
    const key = s.kid ? this.byKid.get(Buffer.from(s.kid).toString('hex')) : undefined;
    if (!key || !this.canVerify(key.record, now)) throw new ProvError('unknown-token-key');
    if (!ed25519Verify(this.pkCache, key.record.publicKey, sigStructure(s.protectedBytes, s.payload), s.signature)) {
      throw new ProvError('unknown-token-key', 'token signature does not verify with its kid');
    }
    const claims = decodeClaims(s.payload);
    if (claims.exp <= now) throw new ProvError('token-expired');
    return claims;
  }

  private canVerify(r: TokenKeyRecord, now: number): boolean {
    return r.retiredAt === undefined || r.retiredAt + this.maxTokenTtl > now;
  }

  /** Keys that can still verify an unexpired token, newest first. */
  verificationKeys(now: number): TokenKeyRecord[] {
    return this.keys.filter((k) => this.canVerify(k.record, now)).map((k) => k.record);
  }

  /**
   * The COSE_KeySet of the verification keys, newest first. With `max`, at most that many: the
   * signing key and the newest retired ones (CoAP `/idprov/keys` lists a bounded set to anyone; the
   * admin sidecar lists all, and the server verifies with all of them either way).
   */
  keySet(now: number, max = Infinity): Buffer {
    let keys = this.verificationKeys(now);
    if (keys.length > max) {
      const cur = this.current;
      keys = [cur, ...keys.filter((k) => k.kid !== cur.kid)].slice(0, Math.max(1, max));
    }
    return encodeKeySet(keys.map((r) => ({ kid: Buffer.from(r.kid, 'hex'), x: r.publicKey })));
  }

  /** The same keys as a JWKS (kid = base64url of the 8 kid bytes). */
  jwks(now: number): { keys: Ed25519Jwk[] } {
    return {
      keys: this.verificationKeys(now).map((r) => ({
        kty: 'OKP',
        crv: 'Ed25519',
        alg: 'EdDSA',
        use: 'sig',
        kid: Buffer.from(r.kid, 'hex').toString('base64url'),
        x: Buffer.from(r.publicKey).toString('base64url'),
      })),
    };
  }
}
