/**
 * CoAP message codes (RFC 7252 §3, §12.1.2; RFC 8516 for 4.29), encoded once: a code is the number
 * the header carries, `class << 5 | detail` (2.05 is 0x45 = 69). Handlers answer with these numbers,
 * the engine writes them into the header unchanged, and {@link formatCode} turns one into the
 * `c.dd` text only where a human reads it (logs, diagnostics).
 *
 * Pure: no imports. It sits in protocol/ so that the service layer can name a code without importing
 * the transport.
 */

/** Build a code from its class and detail (`codeOf(4, 29)` is 4.29). */
export function codeOf(cls: number, detail: number): number {
  return (cls << 5) | detail;
}

/** The response codes this project sends or names (RFC 7252 §12.1.2, RFC 8516). */
export const CoapCode = Object.freeze({
  Created: 0x41, // 2.01
  Deleted: 0x42, // 2.02
  Valid: 0x43, // 2.03
  Changed: 0x44, // 2.04
  Content: 0x45, // 2.05
  Continue: 0x5f, // 2.31
  BadRequest: 0x80, // 4.00
  Unauthorized: 0x81, // 4.01
  BadOption: 0x82, // 4.02
  Forbidden: 0x83, // 4.03
  NotFound: 0x84, // 4.04
  MethodNotAllowed: 0x85, // 4.05
  NotAcceptable: 0x86, // 4.06
  Conflict: 0x89, // 4.09
  PreconditionFailed: 0x8c, // 4.12
  RequestEntityTooLarge: 0x8d, // 4.13
  UnsupportedContentFormat: 0x8f, // 4.15
  TooManyRequests: 0x9d, // 4.29
  InternalServerError: 0xa0, // 5.00
  NotImplemented: 0xa1, // 5.01
  BadGateway: 0xa2, // 5.02
  ServiceUnavailable: 0xa3, // 5.03
  GatewayTimeout: 0xa4, // 5.04
  ProxyingNotSupported: 0xa5, // 5.05
} as const);

/** The class of a code (2 success, 4 client error, 5 server error; 0 for requests and Empty). */
export function codeClass(code: number): number {
  return code >> 5;
}

/** True for a number a response may carry: an integer of class 2, 4 or 5 (detail 0..31). */
export function isResponseCode(code: unknown): code is number {
  if (typeof code !== 'number' || !Number.isInteger(code) || code < 0 || code > 0xff) return false;
  const cls = code >> 5;
  return cls === 2 || cls === 4 || cls === 5;
}

const FORMATTED: string[] = [];
for (let c = 0; c < 256; c++) FORMATTED.push(`${c >> 5}.${String(c & 31).padStart(2, '0')}`);

/** The `c.dd` text of a code, for logs and humans (`formatCode(0x45)` is `'2.05'`). */
export function formatCode(code: number): string {
  return Number.isInteger(code) && code >= 0 && code <= 0xff ? FORMATTED[code]! : `invalid(${String(code)})`;
}

const PARSED = new Map<string, number>();

/**
 * The code of a `c.dd` text (`'4.29'` → 0x9d), or -1 when it is not one of class 2, 4 or 5. For
 * the edges that still receive text (a code in a log or a test); the engine takes numbers. Results
 * are memoised (there are few distinct codes), so a hot caller does not run the regex each time.
 */
export function parseCode(text: string): number {
  const hit = PARSED.get(text);
  if (hit !== undefined) return hit;
  const m = /^([245])\.(\d\d)$/.exec(text);
  if (m === null) return -1;
  const d = Number(m[2]);
  const code = d > 31 ? -1 : (Number(m[1]) << 5) | d;
  if (code >= 0 && PARSED.size < 256) PARSED.set(text, code);
  return code;
}

/** One of {@link CoapCode}'s numbers. */
export type CoapCode = (typeof CoapCode)[keyof typeof CoapCode];

/** The number of a `c.dd` code (`4.01` → `0x81`). @throws RangeError for anything else. */
export function codeNumber(text: string): number {
  const code = parseCode(text);
  if (code < 0) throw new RangeError(`not a CoAP response code: ${text}`);
  return code;
}
