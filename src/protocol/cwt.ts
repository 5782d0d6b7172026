/**
 * CWT claims (RFC 8392) with the `cnf` proof-of-possession key (RFC 8747), docs/spec/idprov-coap-v1.md §5, and the
 * COSE_KeySet of `/idprov/keys`. Encoding is core deterministic; decoding validates every claim type.
 */
import { ProvError } from '../errors.ts';
import { cborMap, decodeCbor, encodeCanonical } from './cbor.ts';

/** Claims of an idprov token. Times are seconds since the epoch. */
export interface TokenClaims {
  iss: string;
  sub: string;
  aud?: string;
  exp: number;
  iat: number;
  /** 8..16 bytes. */
  cti: Uint8Array;
  /** The device's Ed25519 public key (cnf / COSE_Key -2). */
  cnf: Uint8Array;
  /** "service" or "consumer"; absent for devices. */
  role?: string;
}

/** COSE_Key `{1: 1 (OKP), -1: 6 (Ed25519), -2: x}` (RFC 9053 §7.1). */
function okpKey(x: Uint8Array) {
  return cborMap([[1, 1], [-1, 6], [-2, x]]);
}

/** Encode token claims as the CWT payload. */
export function encodeClaims(c: TokenClaims): Buffer {
  return encodeCanonical(
    cborMap([
      [1, c.iss],
      [2, c.sub],
      [3, c.aud],
      [4, c.exp],
      [6, c.iat],
      [7, c.cti],
      [8, cborMap([[1, okpKey(c.cnf)]])],
      ['role', c.role],
    ]),
  );
}

/** Decode and type-check token claims. @throws ProvError `malformed`. */
export function decodeClaims(bytes: Uint8Array): TokenClaims {
  const m = decodeCbor(bytes, 'token claims');
  if (!(m instanceof Map)) throw new ProvError('malformed', 'token claims: not a map');
  const str = (k: number | string, required: boolean): string | undefined => {
    const v = m.get(k);
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string') throw new ProvError('malformed', `token claim ${k} must be a text string`);
    return v;
  };
  const uint = (k: number): number => {
    const v = m.get(k);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ProvError('malformed', `token claim ${k} must be a uint`);
    return v;
  };
  const cti = m.get(7);
  if (!(cti instanceof Uint8Array) || cti.length < 8 || cti.length > 16) throw new ProvError('malformed', 'token claim 7 (cti) must be 8..16 bytes');
  const cnf = m.get(8);
  const key = cnf instanceof Map ? cnf.get(1) : undefined;
  const x = key instanceof Map && key.get(1) === 1 && key.get(-1) === 6 ? key.get(-2) : undefined;
  if (!(x instanceof Uint8Array) || x.length !== 32) throw new ProvError('malformed', 'token claim 8 (cnf) must hold an Ed25519 COSE_Key');
  const claims: TokenClaims = { iss: str(1, true)!, sub: str(2, true)!, exp: uint(4), iat: uint(6), cti, cnf: x };
  const aud = str(3, false);
  if (aud !== undefined) claims.aud = aud;
  const role = str('role', false);
  if (role !== undefined) claims.role = role;
  return claims;
}

/** Encode a COSE_KeySet of Ed25519 verification keys: `[{1: 1, 2: kid, 3: -8, -1: 6, -2: x}, …]`. */
export function encodeKeySet(keys: ReadonlyArray<{ kid: Uint8Array; x: Uint8Array }>): Buffer {
  return encodeCanonical(keys.map((k) => cborMap([[1, 1], [2, k.kid], [3, -8], [-1, 6], [-2, k.x]])));
}

/** Decode a COSE_KeySet of OKP/Ed25519 keys (device simulator, Hub code). */
export function decodeKeySet(bytes: Uint8Array): Array<{ kid: Uint8Array; x: Uint8Array }> {
  const v = decodeCbor(bytes, 'COSE_KeySet');
  if (!Array.isArray(v)) throw new ProvError('malformed', 'COSE_KeySet: not an array');
  return v.map((k: unknown) => {
    if (!(k instanceof Map)) throw new ProvError('malformed', 'COSE_KeySet: entry is not a map');
    const kid = k.get(2);
    const x = k.get(-2);
    if (k.get(1) !== 1 || k.get(-1) !== 6 || !(kid instanceof Uint8Array) || !(x instanceof Uint8Array) || x.length !== 32) {
      throw new ProvError('malformed', 'COSE_KeySet: entry is not an Ed25519 OKP key with a kid');
    }
    return { kid, x };
  });
}
