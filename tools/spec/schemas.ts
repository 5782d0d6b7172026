/**
 * The idprov/coap v1 structures as annotation schemas (docs/spec/idprov-coap-v1.md §2, §4, §5): which
 * key means what, and which byte strings hold embedded CBOR.
 */
import { ERROR_TABLE } from '../../src/errors.ts';
import type { Schema } from './cbor-annotate.ts';

const ALG = { '-8': 'EdDSA' };

/** Names of the `err` values (key 15). */
const ERR_NAMES: Record<string, string> = Object.fromEntries(
  Object.entries(ERROR_TABLE)
    .filter(([, info]) => info.err !== undefined && info.coap !== '4.13' && info.coap !== '4.15')
    .map(([code, info]) => [String(info.err), code]),
);

/** A COSE_Sign1 protected header: `{1: alg, 4: kid}`. */
export const PROTECTED: Schema = { name: 'protected header', map: { 1: { name: 'alg', values: ALG }, 4: { name: 'kid' } } };

/** A COSE_Key for Ed25519 (RFC 9053 §7.1). */
export const COSE_KEY: Schema = {
  name: 'COSE_Key',
  map: {
    1: { name: 'kty', values: { 1: 'OKP' } },
    2: { name: 'kid' },
    3: { name: 'alg', values: ALG },
    '-1': { name: 'crv', values: { 6: 'Ed25519' } },
    '-2': { name: 'x' },
  },
};

/** A COSE_Sign1 with the given payload. */
export function sign1(payload: Schema, name = 'COSE_Sign1'): Schema {
  return {
    name,
    tuple: [{ name: 'protected', embedded: PROTECTED }, { name: 'unprotected' }, { name: 'payload', embedded: payload }, { name: 'signature (Ed25519)' }],
  };
}

/** CWT claims (§5). */
export const CLAIMS: Schema = {
  name: 'CWT claims',
  map: {
    1: { name: 'iss' },
    2: { name: 'sub' },
    3: { name: 'aud' },
    4: { name: 'exp', time: true },
    6: { name: 'iat', time: true },
    7: { name: 'cti' },
    8: { name: 'cnf', map: { 1: COSE_KEY } },
    role: { name: 'role' },
  },
};

/** A token: a COSE_Sign1 over the claims. */
export const TOKEN: Schema = sign1(CLAIMS, 'CWT (COSE_Sign1)');

const NONCE: Schema = { name: 'nonce', nonce: true };

/** The `/idprov/request` body (§2). */
export const REQUEST_BODY: Schema = {
  name: 'request body',
  map: {
    1: { name: 'id' },
    2: { name: 'pk' },
    3: { name: 'mac' },
    4: NONCE,
    5: { name: 'type', values: { 0: 'device', 1: 'service', 2: 'consumer' } },
    6: { name: 'xk' },
    7: { name: 'oob' },
  },
};

/** The `/idprov/refresh` body (§2). */
export const REFRESH_BODY: Schema = {
  name: 'refresh body',
  map: { 1: { name: 'id' }, 4: NONCE, 6: { name: 'xk' }, 8: { name: 'token', embedded: TOKEN } },
};

/** A response body (§4). */
export const RESPONSE: Schema = {
  name: 'response',
  map: {
    0: { name: 'status', values: { 0: 'approved', 1: 'pending', 2: 'rejected' } },
    4: NONCE,
    8: { name: 'token', embedded: TOKEN },
    9: { name: 'exp', time: true },
    10: { name: 'retry' },
    11: { name: 'ttl' },
    12: { name: 'diag' },
    13: { name: 'sealed', tuple: [{ name: 'epk' }, { name: 'nonce' }, { name: 'box' }] },
    14: { name: 'hub' },
    15: { name: 'err', values: ERR_NAMES },
  },
};

/** The `/idprov/keys` answer (§5). */
export const KEYSET: Schema = { name: 'COSE_KeySet', items: COSE_KEY };
