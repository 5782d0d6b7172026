/**
 * Typed errors with stable codes. Every failure the server can report carries a
 * {@link ProvErrorCode}; {@link ERROR_TABLE} maps each code to its CoAP response code, the wire `err`
 * number of docs/spec/idprov-coap-v1.md §4.3 and the HTTP status the admin sidecar uses. Tests assert on `code`, never on
 * message text; test/errors.test.ts reads the spec's `err` table and docs/admin-api.md's error table
 * and fails when the registry differs from either.
 */

/** Stable error codes. The first twelve are the `err` values of docs/spec/idprov-coap-v1.md §4. */
export type ProvErrorCode =
  | 'malformed'
  | 'bad-signature'
  | 'nonce'
  | 'key-mismatch'
  | 'mac-mismatch'
  | 'rejected'
  | 'revoked'
  | 'token-expired'
  | 'rate-limited'
  | 'disabled'
  | 'oob-mismatch'
  | 'unknown-token-key'
  | 'too-large'
  | 'unsupported-content-format'
  | 'not-found'
  | 'method-not-allowed'
  | 'unauthenticated'
  | 'forbidden'
  | 'conflict'
  | 'unavailable'
  | 'internal';

/** One row of the error registry. */
export interface ErrorInfo {
  /** CoAP response code as `c.dd`. */
  readonly coap: string;
  /**
   * The `err` number sent in key 15 of a response body, where docs/spec/idprov-coap-v1.md §4.3 defines
   * one. 4.13 and 4.15 have none: the CoAP layer raises them with a text payload, no CBOR body (§1.4).
   */
  readonly err?: number;
  /** HTTP status on the admin sidecar. */
  readonly http: number;
  /** One-line meaning, shown in docs and `diag`. */
  readonly meaning: string;
}

/** The registry: one row per code (fastify keeps such a table in lib/errors.js). */
export const ERROR_TABLE: Readonly<Record<ProvErrorCode, ErrorInfo>> = Object.freeze({
  malformed: { coap: '4.00', err: 1, http: 400, meaning: 'the request could not be decoded or a field has the wrong type' },
  'bad-signature': { coap: '4.01', err: 2, http: 401, meaning: 'the COSE_Sign1 signature does not verify' },
  nonce: { coap: '4.01', err: 3, http: 401, meaning: 'the server nonce is missing, expired, foreign or already used' },
  'key-mismatch': { coap: '4.03', err: 4, http: 403, meaning: 'the public key differs from the allowlisted or recorded one' },
  'mac-mismatch': { coap: '4.03', err: 5, http: 403, meaning: 'the MAC address differs from the allowlisted one' },
  rejected: { coap: '4.03', err: 6, http: 403, meaning: 'an admin rejected this device' },
  revoked: { coap: '4.03', err: 7, http: 403, meaning: 'the device was revoked by an admin' },
  'token-expired': { coap: '4.03', err: 8, http: 403, meaning: 'the presented token has expired' },
  'rate-limited': { coap: '4.29', err: 9, http: 429, meaning: 'too many requests; wait Max-Age seconds' },
  disabled: { coap: '5.03', err: 10, http: 503, meaning: 'provisioning is disabled by an admin or after a rogue-server alert' },
  'oob-mismatch': { coap: '4.01', err: 11, http: 401, meaning: 'the out-of-band secret was not proven' },
  'unknown-token-key': { coap: '4.03', err: 12, http: 403, meaning: 'the presented token was signed by a key this server does not know' },
  'too-large': { coap: '4.13', http: 413, meaning: 'the request payload exceeds 1024 bytes' },
  'unsupported-content-format': { coap: '4.15', http: 415, meaning: 'the Content-Format is not the one the resource takes' },
  'not-found': { coap: '4.04', http: 404, meaning: 'no such resource or record' },
  'method-not-allowed': { coap: '4.05', http: 405, meaning: 'the resource does not take this method' },
  unauthenticated: { coap: '4.01', http: 401, meaning: 'missing, invalid or expired admin credentials' },
  forbidden: { coap: '4.03', http: 403, meaning: 'the credentials lack the role this operation needs' },
  conflict: { coap: '4.09', http: 409, meaning: 'the record changed or is in a state that does not allow this' },
  unavailable: { coap: '5.03', http: 503, meaning: 'the server cannot reach its database right now; retry after Max-Age' },
  internal: { coap: '5.00', http: 500, meaning: 'an internal error; see the server log' },
});

/** Marks a {@link ProvError} whichever copy of this module made it (see `Symbol.hasInstance` below). */
const BRAND: unique symbol = Symbol.for('idprov.ProvError') as never;

/** The one error class of the project. `code` is stable; `message` is for humans. */
export class ProvError extends Error {
  /**
   * `instanceof ProvError` holds for a ProvError made by any copy of this module. A module loaded by
   * `import()` from code that was itself loaded through `require` (tsx under mocha loads the test
   * graph so) is a second copy, with a second class: the PostgreSQL store, imported only when
   * configured, would throw errors the service did not recognise (a used nonce became 5.00).
   */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return typeof x === 'object' && x !== null && (x as { [BRAND]?: unknown })[BRAND] === true;
  }

  override readonly name = 'ProvError';
  readonly code: ProvErrorCode;
  /** Extra, non-secret detail for logs (never sent to peers unless put in `message`). */
  readonly detail?: Record<string, unknown>;

  constructor(code: ProvErrorCode, message?: string, detail?: Record<string, unknown>) {
    super(message ?? ERROR_TABLE[code].meaning);
    Object.defineProperty(this, BRAND, { value: true });
    this.code = code;
    if (detail) this.detail = detail;
  }

  get info(): ErrorInfo {
    return ERROR_TABLE[this.code];
  }
}

/** True when `e` is a {@link ProvError}, optionally with the given code. */
export function isProvError(e: unknown, code?: ProvErrorCode): e is ProvError {
  return e instanceof ProvError && (code === undefined || e.code === code);
}
