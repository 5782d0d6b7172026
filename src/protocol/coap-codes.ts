/**
 * CoAP response codes as numbers (RFC 7252 §12.1.2: class << 5 | detail), with names. The device API
 * encodes a service outcome to one of these once; `codeText` renders the `c.dd` form for logs, docs
 * and the engine while it still speaks strings.
 */
export const CoapCode = {
  Created: 0x41, // 2.01
  Changed: 0x44, // 2.04
  Content: 0x45, // 2.05
  BadRequest: 0x80, // 4.00
  Unauthorized: 0x81, // 4.01
  BadOption: 0x82, // 4.02
  Forbidden: 0x83, // 4.03
  NotFound: 0x84, // 4.04
  MethodNotAllowed: 0x85, // 4.05
  NotAcceptable: 0x86, // 4.06
  Conflict: 0x89, // 4.09
  RequestEntityTooLarge: 0x8d, // 4.13
  UnsupportedContentFormat: 0x8f, // 4.15
  TooManyRequests: 0x9d, // 4.29
  InternalServerError: 0xa0, // 5.00
  ServiceUnavailable: 0xa3, // 5.03
  ProxyingNotSupported: 0xa5, // 5.05
} as const;

/** One of {@link CoapCode}'s numbers. */
export type CoapCode = (typeof CoapCode)[keyof typeof CoapCode];

/** `c.dd` of a code number (`0x81` → `4.01`). */
export function codeText(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

/** The number of a `c.dd` code (`4.01` → `0x81`). @throws RangeError for anything else. */
export function codeNumber(text: string): number {
  const m = /^([0-7])\.(\d\d)$/.exec(text);
  if (!m || Number(m[2]) > 31) throw new RangeError(`not a CoAP code: ${text}`);
  return (Number(m[1]) << 5) | Number(m[2]);
}
