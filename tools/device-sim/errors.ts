/**
 * Errors of the device simulator itself (not the server's answers, which come back as results).
 * One class with a stable `code`, as in `src/errors.ts`; tests assert on the code.
 */

/** Why the simulator gave up. */
export type DeviceSimErrorCode =
  /** No CoAP response in time. */
  | 'timeout'
  /** The socket failed (e.g. the host name does not resolve). */
  | 'transport'
  /** The server's response breaks docs/spec/idprov-coap-v1.md (undecodable body, approved without a token, …). */
  | 'bad-response'
  /** A sealed token (§5 key 13) did not open with the device's X25519 key. */
  | 'seal'
  /** The issued token is not for this device (sub ≠ id or cnf ≠ the device key). */
  | 'token-mismatch'
  /** `refresh` without a token. */
  | 'no-token'
  /** The key file is unreadable or invalid. */
  | 'key-file'
  /** Bad options (device ID, MAC, server URI, …). */
  | 'usage';

export class DeviceSimError extends Error {
  override readonly name = 'DeviceSimError';
  constructor(
    readonly code: DeviceSimErrorCode,
    message: string,
  ) {
    super(message);
  }
}
