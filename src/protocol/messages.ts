/**
 * Request and response bodies of docs/spec/idprov-coap-v1.md §2 and §4. Bytes in, typed values out; every failure is
 * `ProvError('malformed')` (4.00). Unknown keys are ignored (forward compatibility); a known key with
 * the wrong type is malformed.
 */
import type { ClientType } from '../domain.ts';
import { ProvError } from '../errors.ts';
import { cborMap, decodeCbor, encodeCanonical, type CborValue } from './cbor.ts';

/** Body of `/idprov/request` (docs/spec/idprov-coap-v1.md §2). */
export interface RequestBody {
  id: string;
  pk: Uint8Array;
  mac?: Uint8Array;
  nonce?: Uint8Array;
  type: ClientType;
  xk?: Uint8Array;
  oob?: Uint8Array;
}

/** Body of `/idprov/refresh` (docs/spec/idprov-coap-v1.md §2). */
export interface RefreshBody {
  id: string;
  nonce?: Uint8Array;
  xk?: Uint8Array;
  token: Uint8Array;
}

/** Response status (key 0). */
export type ResponseStatus = 0 | 1 | 2;
export const STATUS = { approved: 0, pending: 1, rejected: 2 } as const;

/** A response body (docs/spec/idprov-coap-v1.md §4). */
export interface ResponseBody {
  status?: ResponseStatus;
  nonce?: Uint8Array;
  token?: Uint8Array;
  exp?: number;
  retry?: number;
  ttl?: number;
  diag?: string;
  sealed?: { epk: Uint8Array; nonce: Uint8Array; box: Uint8Array };
  hub?: string;
  err?: number;
}

/** Largest token a refresh may present. */
export const MAX_TOKEN_BYTES = 512;
const ID_RE = /^[A-Za-z0-9._:-]{1,64}$/;
/** The device ID rule, as error messages state it. */
export const DEVICE_ID_RULE = 'must be 1..64 characters of [A-Za-z0-9._:-], and not "." or ".."';

/**
 * True when `id` is a valid device ID: 1..64 bytes of `[A-Za-z0-9._:-]`, but not `.` or `..`, which
 * URLs treat as dot segments (a browser or fetch turns `/devices/../revoke` into `/revoke`).
 */
export function isValidDeviceId(id: string): boolean {
  return ID_RE.test(id) && id !== '.' && id !== '..';
}

function bodyMap(bytes: Uint8Array, what: string): Map<unknown, unknown> {
  const v = decodeCbor(bytes, what);
  if (!(v instanceof Map)) throw new ProvError('malformed', `${what}: not a map`);
  return v;
}

function bstr(m: Map<unknown, unknown>, key: number, name: string, min: number, max: number, required: true): Uint8Array;
function bstr(m: Map<unknown, unknown>, key: number, name: string, min: number, max: number, required?: false): Uint8Array | undefined;
function bstr(m: Map<unknown, unknown>, key: number, name: string, min: number, max: number, required = false): Uint8Array | undefined {
  const v = m.get(key);
  if (v === undefined) {
    if (required) throw new ProvError('malformed', `key ${key} (${name}) is required`);
    return undefined;
  }
  if (!(v instanceof Uint8Array)) throw new ProvError('malformed', `key ${key} (${name}) must be a byte string`);
  if (v.length < min || v.length > max) {
    throw new ProvError('malformed', `key ${key} (${name}) must be ${min === max ? min : `${min}..${max}`} bytes, got ${v.length}`);
  }
  return v;
}

function deviceId(m: Map<unknown, unknown>): string {
  const id = m.get(1);
  if (id === undefined) throw new ProvError('malformed', 'key 1 (id) is required');
  if (typeof id !== 'string') throw new ProvError('malformed', 'key 1 (id) must be a text string');
  if (!isValidDeviceId(id)) throw new ProvError('malformed', `key 1 (id) ${DEVICE_ID_RULE}`);
  return id;
}

/** Parse a `/idprov/request` body (the COSE payload bytes). */
export function parseRequestBody(bytes: Uint8Array): RequestBody {
  const m = bodyMap(bytes, 'request body');
  const body: RequestBody = { id: deviceId(m), pk: bstr(m, 2, 'pk', 32, 32, true), type: 0 };
  const mac = m.get(3);
  if (mac !== undefined) {
    if (!(mac instanceof Uint8Array) || (mac.length !== 6 && mac.length !== 8)) {
      throw new ProvError('malformed', 'key 3 (mac) must be a 6- or 8-byte string');
    }
    body.mac = mac;
  }
  const nonce = bstr(m, 4, 'nonce', 8, 32);
  if (nonce) body.nonce = nonce;
  const type = m.get(5);
  if (type !== undefined) {
    if (type !== 0 && type !== 1 && type !== 2) throw new ProvError('malformed', 'key 5 (type) must be 0, 1 or 2');
    body.type = type;
  }
  const xk = bstr(m, 6, 'xk', 32, 32);
  if (xk) body.xk = xk;
  const oob = bstr(m, 7, 'oob', 32, 32);
  if (oob) body.oob = oob;
  return body;
}

/** Parse a `/idprov/refresh` body. */
export function parseRefreshBody(bytes: Uint8Array): RefreshBody {
  const m = bodyMap(bytes, 'refresh body');
  const body: RefreshBody = { id: deviceId(m), token: bstr(m, 8, 'token', 1, MAX_TOKEN_BYTES, true) };
  const nonce = bstr(m, 4, 'nonce', 8, 32);
  if (nonce) body.nonce = nonce;
  const xk = bstr(m, 6, 'xk', 32, 32);
  if (xk) body.xk = xk;
  return body;
}

/** Encode a request body (used by the device simulator and tests). */
export function encodeRequestBody(b: RequestBody): Buffer {
  return encodeCanonical(
    cborMap([
      [1, b.id],
      [2, b.pk],
      [3, b.mac],
      [4, b.nonce],
      [5, b.type === 0 ? undefined : b.type],
      [6, b.xk],
      [7, b.oob],
    ]),
  );
}

/** Encode a refresh body (used by the device simulator and tests). */
export function encodeRefreshBody(b: RefreshBody): Buffer {
  return encodeCanonical(cborMap([[1, b.id], [4, b.nonce], [6, b.xk], [8, b.token]]));
}

/** Encode a response body with core deterministic CBOR. */
export function encodeResponse(r: ResponseBody): Buffer {
  const sealed: CborValue | undefined = r.sealed ? [r.sealed.epk, r.sealed.nonce, r.sealed.box] : undefined;
  return encodeCanonical(
    cborMap([
      [0, r.status],
      [4, r.nonce],
      [8, r.token],
      [9, r.exp],
      [10, r.retry],
      [11, r.ttl],
      [12, r.diag],
      [13, sealed],
      [14, r.hub],
      [15, r.err],
    ]),
  );
}

/** Decode a response body (device simulator, tests). Unknown keys are ignored. */
export function parseResponse(bytes: Uint8Array): ResponseBody {
  const m = bodyMap(bytes, 'response body');
  const r: ResponseBody = {};
  const uint = (k: number): number | undefined => {
    const v = m.get(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ProvError('malformed', `response key ${k} must be a uint`);
    return v;
  };
  const status = uint(0);
  if (status !== undefined) {
    if (status > 2) throw new ProvError('malformed', 'response status must be 0, 1 or 2');
    r.status = status as ResponseStatus;
  }
  const nonce = bstr(m, 4, 'nonce', 8, 32);
  if (nonce) r.nonce = nonce;
  const token = bstr(m, 8, 'token', 1, MAX_TOKEN_BYTES);
  if (token) r.token = token;
  for (const [k, name] of [[9, 'exp'], [10, 'retry'], [11, 'ttl'], [15, 'err']] as const) {
    const v = uint(k);
    if (v !== undefined) r[name] = v;
  }
  for (const [k, name] of [[12, 'diag'], [14, 'hub']] as const) {
    const v = m.get(k);
    if (v === undefined) continue;
    if (typeof v !== 'string') throw new ProvError('malformed', `response key ${k} must be a text string`);
    r[name] = v;
  }
  const sealed = m.get(13);
  if (sealed !== undefined) {
    if (
      !Array.isArray(sealed) ||
      sealed.length !== 3 ||
      !(sealed[0] instanceof Uint8Array) ||
      sealed[0].length !== 32 ||
      !(sealed[1] instanceof Uint8Array) ||
      sealed[1].length !== 24 ||
      !(sealed[2] instanceof Uint8Array)
    ) {
      throw new ProvError('malformed', 'response key 13 (sealed) must be [bstr 32, bstr 24, bstr]');
    }
    r.sealed = { epk: sealed[0], nonce: sealed[1], box: sealed[2] };
  }
  return r;
}
