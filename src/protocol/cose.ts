/**
 * COSE_Sign1 (RFC 9052 §4.2) as docs/spec/idprov-coap-v1.md §2 and §5 use it: EdDSA (alg -8) only, attached payload,
 * CBOR tag 18 optional. The signed bytes are always the bytes as received — nothing is re-encoded.
 */
import { ProvError } from '../errors.ts';
import { CborTagged, asTag, cborMap, decodeCbor, encodeCanonical } from './cbor.ts';

/** COSE algorithm identifier for EdDSA (RFC 9053 §2.2). */
export const ALG_EDDSA = -8;
/** CBOR tag of COSE_Sign1. */
export const TAG_COSE_SIGN1 = 18;

/** A decoded COSE_Sign1 with the raw bytes needed to verify it. */
export interface Sign1 {
  /** The protected header bstr, exactly as received. */
  protectedBytes: Uint8Array;
  /** The payload bstr, exactly as received. */
  payload: Uint8Array;
  /** The 64-byte Ed25519 signature. */
  signature: Uint8Array;
  /** `kid` (label 4) from the protected header, if present. */
  kid?: Uint8Array;
}

const PROTECTED_EDDSA = encodeCanonical(new Map([[1, ALG_EDDSA]]));

/**
 * Parse a COSE_Sign1: `[protected: bstr, unprotected: map, payload: bstr, signature: bstr(64)]`,
 * tagged 18 or untagged. The protected header must decode to a map whose alg (1) is -8.
 * @throws ProvError `malformed`.
 */
export function parseSign1(bytes: Uint8Array, what = 'COSE_Sign1'): Sign1 {
  let v = decodeCbor(bytes, what);
  const tag = asTag(v);
  if (tag) {
    if (tag.tag !== TAG_COSE_SIGN1) throw new ProvError('malformed', `${what}: unexpected tag ${tag.tag}`);
    v = tag.value;
  }
  if (!Array.isArray(v) || v.length !== 4) throw new ProvError('malformed', `${what}: not a 4-element array`);
  const [prot, unprot, payload, signature] = v as unknown[];
  if (!(prot instanceof Uint8Array)) throw new ProvError('malformed', `${what}: protected header is not a bstr`);
  if (!(unprot instanceof Map)) throw new ProvError('malformed', `${what}: unprotected header is not a map`);
  if (!(payload instanceof Uint8Array)) throw new ProvError('malformed', `${what}: payload is not a bstr (detached payloads are not supported)`);
  if (!(signature instanceof Uint8Array) || signature.length !== 64) throw new ProvError('malformed', `${what}: signature is not a 64-byte bstr`);
  const hdr = prot.length === 0 ? new Map() : decodeCbor(prot, `${what} protected header`);
  if (!(hdr instanceof Map)) throw new ProvError('malformed', `${what}: protected header is not a map`);
  if (hdr.get(1) !== ALG_EDDSA) throw new ProvError('malformed', `${what}: alg is not EdDSA (-8)`);
  const kid = hdr.get(4);
  if (kid !== undefined && !(kid instanceof Uint8Array)) throw new ProvError('malformed', `${what}: kid is not a bstr`);
  const out: Sign1 = { protectedBytes: prot, payload, signature };
  if (kid) out.kid = kid;
  return out;
}

/** The Sig_structure `["Signature1", protected, h'', payload]` (RFC 9052 §4.4) to sign or verify. */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Buffer {
  return encodeCanonical(['Signature1', protectedBytes, new Uint8Array(0), payload]);
}

/** The protected header for a request envelope: `{1: -8}`. */
export function protectedHeader(kid?: Uint8Array): Buffer {
  return kid ? encodeCanonical(cborMap([[1, ALG_EDDSA], [4, kid]])) : PROTECTED_EDDSA;
}

/** Encode a COSE_Sign1 with an empty unprotected header. */
export function encodeSign1(protectedBytes: Uint8Array, payload: Uint8Array, signature: Uint8Array, tagged = false): Buffer {
  const arr = [protectedBytes, new Map(), payload, signature];
  return encodeCanonical(tagged ? new CborTagged(TAG_COSE_SIGN1, arr) : arr);
}
