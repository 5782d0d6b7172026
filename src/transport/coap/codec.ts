/**
 * CoAP message codec for the server's hot path (RFC 7252 §3).
 *
 * The engine decodes and encodes with this module rather than calling `coap-packet` per datagram.
 * `coap-packet` (1.1.1) stays the reference codec: the tests check that everything this module
 * encodes parses with `coap-packet` to the same fields, and that everything `coap-packet`
 * generates decodes here to the same fields. Measured on this machine, `coap-packet`'s `generate`
 * costs ~2.7 µs per small response (it UTF-8-decodes the payload twice and allocates one buffer per
 * option) and its `parse` accepts several message format errors that a server must reject:
 * - token lengths 9–15 (RFC 7252 §3 reserves them; it reads 13/14 as RFC 8974 extended tokens),
 * - options whose value runs past the end of the datagram (it silently truncates the value),
 * - a payload marker followed by no payload (RFC 7252 §3: "MUST be processed as a message format
 *   error").
 * This decoder is strict about all three, allocates nothing while walking options (positions go
 * into a reused scratch structure), and the encoder writes each message with one exact-size copy.
 *
 * Neither function is re-entrant across an `await`: callers use a decode result synchronously.
 */
import { isUtf8 } from 'node:buffer';

/** Message types (RFC 7252 §3, §4). */
export const TYPE_CON = 0;
export const TYPE_NON = 1;
export const TYPE_ACK = 2;
export const TYPE_RST = 3;

/** Option numbers used by the engine (RFC 7252 §12.2, RFC 7959 §2.1/§4, RFC 7967, RFC 8613, RFC 9177). */
export const OPT = {
  IF_MATCH: 1,
  URI_HOST: 3,
  ETAG: 4,
  IF_NONE_MATCH: 5,
  OBSERVE: 6,
  URI_PORT: 7,
  LOCATION_PATH: 8,
  OSCORE: 9,
  URI_PATH: 11,
  CONTENT_FORMAT: 12,
  MAX_AGE: 14,
  URI_QUERY: 15,
  HOP_LIMIT: 16,
  ACCEPT: 17,
  Q_BLOCK1: 19,
  LOCATION_QUERY: 20,
  BLOCK2: 23,
  BLOCK1: 27,
  SIZE2: 28,
  Q_BLOCK2: 31,
  PROXY_URI: 35,
  PROXY_SCHEME: 39,
  SIZE1: 60,
  NO_RESPONSE: 258,
} as const;

/** Most Uri-Path / Uri-Query options a request may carry; more is answered 4.04 / 4.00. */
export const MAX_URI_OPTIONS = 32;

/** Outcome of {@link decodeMessage}. */
export const DECODE_OK = 0;
/** Not a CoAP message we may answer (shorter than 4 bytes, or version ≠ 1): silently ignored (§3). */
export const DECODE_IGNORE = 1;
/** The header is readable but the message is malformed (§3, §4.2/§4.3): a CON is answered with RST. */
export const DECODE_FORMAT_ERROR = 2;

/**
 * The scratch result of {@link decodeMessage}. One instance is reused for every datagram; read it
 * synchronously, copy what must outlive the call.
 */
export class DecodedMessage {
  type = 0;
  /** Raw code byte: class in the top 3 bits, detail in the low 5. */
  code = 0;
  messageId = 0;
  tokenLength = 0;
  /** Offset of the payload (after the 0xFF marker), or the datagram length when there is none. */
  payloadStart = 0;
  /** Content-Format (§5.10.3), -1 when absent. */
  contentFormat = -1;
  /** Accept (§5.10.4), -1 when absent. */
  accept = -1;
  /** Raw Block2 value (RFC 7959 §2.2), -1 when absent. */
  block2 = -1;
  /** Raw Block1 value, -1 when absent. */
  block1 = -1;
  /** Whether the request carried Size2 (RFC 7959 §4: "please tell me the size"). */
  size2 = false;
  /** The first unrecognised critical option (RFC 7252 §5.4.1), 0 when none. */
  badCritical = 0;
  /** Why the request is a 4.00 (an option value that is recognised but invalid), '' when fine. */
  badRequest = '';
  /** Proxy-Uri or Proxy-Scheme present (§5.10.2): we are no proxy, answer 5.05. */
  proxy = false;
  /** Number of Uri-Path options; `pathOff`/`pathLen` hold their value positions. */
  pathCount = 0;
  readonly pathOff = new Int32Array(MAX_URI_OPTIONS);
  readonly pathLen = new Int32Array(MAX_URI_OPTIONS);
  /** More than {@link MAX_URI_OPTIONS} Uri-Path options were present. */
  pathOverflow = false;
  queryCount = 0;
  readonly queryOff = new Int32Array(MAX_URI_OPTIONS);
  readonly queryLen = new Int32Array(MAX_URI_OPTIONS);
  queryOverflow = false;

  reset(): void {
    this.contentFormat = -1;
    this.accept = -1;
    this.block2 = -1;
    this.block1 = -1;
    this.size2 = false;
    this.badCritical = 0;
    this.badRequest = '';
    this.proxy = false;
    this.pathCount = 0;
    this.pathOverflow = false;
    this.queryCount = 0;
    this.queryOverflow = false;
  }
}

function readUint(buf: Buffer, off: number, len: number): number {
  let v = 0;
  for (let i = 0; i < len; i++) v = v * 256 + buf[off + i]!;
  return v;
}

/** True when `buf[off, off+len)` is valid UTF-8 (ASCII fast path; strings are Net-Unicode, §3.2). */
function utf8At(buf: Buffer, off: number, len: number): boolean {
  for (let i = 0; i < len; i++) {
    if (buf[off + i]! >= 0x80) return isUtf8(buf.subarray(off, off + len));
  }
  return true;
}

/**
 * Decode the header of `buf` and, for requests (code class 0), walk every option.
 *
 * Returns {@link DECODE_IGNORE} for datagrams that are not CoAP version 1 (§3: silently ignored),
 * {@link DECODE_FORMAT_ERROR} for message format errors (§3, §4.1: empty messages with a token or
 * bytes after the header; token length 9–15; reserved option nibble 15; option values running past
 * the end; a payload marker with no payload), else {@link DECODE_OK}. Option *semantics* problems
 * are reported in `m.badCritical` / `m.badRequest` / `m.proxy`, not as format errors, because the
 * request is still answerable (4.02 / 4.00 / 5.05). Responses (classes 2–5) are decoded up to the
 * token only: the server never reads their options. Never throws.
 */
export function decodeMessage(buf: Buffer, m: DecodedMessage): number {
  const len = buf.length;
  if (len < 4) return DECODE_IGNORE;
  const b0 = buf[0]!;
  if (b0 >> 6 !== 1) return DECODE_IGNORE;
  m.type = (b0 >> 4) & 3;
  m.tokenLength = b0 & 15;
  m.code = buf[1]!;
  m.messageId = (buf[2]! << 8) | buf[3]!;
  m.reset();
  m.payloadStart = len;
  if (m.code === 0) {
    // §4.1: an Empty message has TKL 0 and nothing after the 4-byte header.
    return m.tokenLength === 0 && len === 4 ? DECODE_OK : DECODE_FORMAT_ERROR;
  }
  if (m.tokenLength > 8) return DECODE_FORMAT_ERROR;
  let i = 4 + m.tokenLength;
  if (i > len) return DECODE_FORMAT_ERROR;
  if (m.code >> 5 !== 0) return DECODE_OK;

  let num = 0;
  // Seen-flags for the non-repeatable options we act on (§5.4.5: repeats count as unrecognised).
  let seen = 0;
  while (i < len) {
    const hdr = buf[i++]!;
    if (hdr === 0xff) {
      if (i === len) return DECODE_FORMAT_ERROR; // marker with zero-length payload (§3)
      m.payloadStart = i;
      return DECODE_OK;
    }
    let delta = hdr >> 4;
    let olen = hdr & 15;
    if (delta === 13) {
      if (i >= len) return DECODE_FORMAT_ERROR;
      delta = buf[i++]! + 13;
    } else if (delta === 14) {
      if (i + 1 >= len) return DECODE_FORMAT_ERROR;
      delta = ((buf[i]! << 8) | buf[i + 1]!) + 269;
      i += 2;
    } else if (delta === 15) {
      return DECODE_FORMAT_ERROR;
    }
    if (olen === 13) {
      if (i >= len) return DECODE_FORMAT_ERROR;
      olen = buf[i++]! + 13;
    } else if (olen === 14) {
      if (i + 1 >= len) return DECODE_FORMAT_ERROR;
      olen = ((buf[i]! << 8) | buf[i + 1]!) + 269;
      i += 2;
    } else if (olen === 15) {
      return DECODE_FORMAT_ERROR;
    }
    num += delta;
    if (num > 0xffff) return DECODE_FORMAT_ERROR;
    if (i + olen > len) return DECODE_FORMAT_ERROR;
    const off = i;
    i += olen;
    // Recognised options; a value length outside the defined range (§5.4.3) or a repeat of a
    // non-repeatable option (§5.4.5) makes the occurrence "unrecognised": critical → 4.02,
    // elective → ignored.
    let ok = true;
    switch (num) {
      case OPT.URI_HOST: // §5.10.1, 1–255, we serve one origin and ignore the value
        ok = olen >= 1 && !(seen & 1);
        seen |= 1;
        break;
      case OPT.URI_PORT: // §5.10.1, 0–2
        ok = olen <= 2 && !(seen & 2);
        seen |= 2;
        break;
      case OPT.URI_PATH: // §5.10.1, 0–255, repeatable
        if (olen > 255) ok = false;
        else if (m.pathCount < MAX_URI_OPTIONS) {
          if (!utf8At(buf, off, olen)) m.badRequest ||= 'Uri-Path is not UTF-8';
          m.pathOff[m.pathCount] = off;
          m.pathLen[m.pathCount++] = olen;
        } else m.pathOverflow = true;
        break;
      case OPT.URI_QUERY: // §5.10.1, 0–255, repeatable
        if (olen > 255) ok = false;
        else if (m.queryCount < MAX_URI_OPTIONS) {
          if (!utf8At(buf, off, olen)) m.badRequest ||= 'Uri-Query is not UTF-8';
          m.queryOff[m.queryCount] = off;
          m.queryLen[m.queryCount++] = olen;
        } else m.queryOverflow = true;
        break;
      case OPT.CONTENT_FORMAT: // §5.10.3, 0–2, elective
        if (olen <= 2 && !(seen & 4)) m.contentFormat = readUint(buf, off, olen);
        seen |= 4;
        break;
      case OPT.ACCEPT: // §5.10.4, 0–2, critical
        ok = olen <= 2 && !(seen & 8);
        seen |= 8;
        if (ok) m.accept = readUint(buf, off, olen);
        break;
      case OPT.BLOCK2: // RFC 7959 §2.1, 0–3, critical
        ok = olen <= 3 && !(seen & 16);
        seen |= 16;
        if (ok) {
          m.block2 = readUint(buf, off, olen);
          // RFC 7959 §2.2: SZX 7 is reserved and "MUST lead to a 4.00 Bad Request" in a request.
          if ((m.block2 & 7) === 7) m.badRequest ||= 'Block2 SZX 7 is reserved';
        }
        break;
      case OPT.BLOCK1: // RFC 7959 §2.1, 0–3, critical
        ok = olen <= 3 && !(seen & 32);
        seen |= 32;
        if (ok) m.block1 = readUint(buf, off, olen);
        break;
      case OPT.SIZE2: // RFC 7959 §4, 0–4, elective
        if (olen <= 4) m.size2 = true;
        break;
      case OPT.PROXY_URI: // §5.10.2, 1–1034
        ok = olen >= 1 && olen <= 1034;
        if (ok) m.proxy = true;
        break;
      case OPT.PROXY_SCHEME: // §5.10.2, 1–255
        ok = olen >= 1 && olen <= 255;
        if (ok) m.proxy = true;
        break;
      default:
        // Every other critical (odd) option is unrecognised here, including If-Match, If-None-Match
        // (no conditional requests), OSCORE, Q-Block1/2 (RFC 9177). Elective (even) options —
        // ETag, Observe, Max-Age, Size1, Hop-Limit, No-Response, … — are ignored (§5.4.1).
        ok = (num & 1) === 0;
    }
    if (!ok && (num & 1) === 1 && m.badCritical === 0) m.badCritical = num;
  }
  return DECODE_OK;
}

/** The Uri-Path as `/a/b` (`/` when absent). */
export function pathOf(buf: Buffer, m: DecodedMessage): string {
  const n = m.pathCount;
  if (n === 0) return '/';
  let s = '/' + buf.toString('utf8', m.pathOff[0]!, m.pathOff[0]! + m.pathLen[0]!);
  for (let k = 1; k < n; k++) s += '/' + buf.toString('utf8', m.pathOff[k]!, m.pathOff[k]! + m.pathLen[k]!);
  return s;
}

const NO_QUERY: string[] = [];
Object.freeze(NO_QUERY);

/** The Uri-Query options as strings (a shared frozen empty array when none). */
export function queryOf(buf: Buffer, m: DecodedMessage): string[] {
  const n = m.queryCount;
  if (n === 0) return NO_QUERY;
  const q = new Array<string>(n);
  for (let k = 0; k < n; k++) q[k] = buf.toString('utf8', m.queryOff[k]!, m.queryOff[k]! + m.queryLen[k]!);
  return q;
}

/** Bytes needed to encode `v` as a minimal CoAP uint (§3.2): 0 → 0 bytes. */
export function uintLength(v: number): number {
  return v === 0 ? 0 : v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x1000000 ? 3 : 4;
}

/** Encode a uint option value (minimal length) into a new Buffer. */
export function encodeUint(v: number): Buffer {
  const n = uintLength(v);
  const b = Buffer.allocUnsafe(n);
  for (let k = n - 1, x = v; k >= 0; k--, x = Math.floor(x / 256)) b[k] = x & 0xff;
  return b;
}

/**
 * Builds one CoAP message into a reused scratch buffer, then copies it out at its exact size.
 * Options must be written in ascending number order (§3.1); the writer computes the deltas.
 */
export class MessageWriter {
  private readonly buf: Buffer;
  private pos = 0;
  private last = 0;

  /** @param capacity the largest message this writer can build (bytes). */
  constructor(capacity = 65_535) {
    this.buf = Buffer.allocUnsafeSlow(capacity);
  }

  /** Start a message: header and token (§3). */
  begin(type: number, code: number, messageId: number, token: Buffer): this {
    const b = this.buf;
    b[0] = 0x40 | (type << 4) | token.length;
    b[1] = code;
    b[2] = (messageId >> 8) & 0xff;
    b[3] = messageId & 0xff;
    token.copy(b, 4);
    this.pos = 4 + token.length;
    this.last = 0;
    return this;
  }

  private header(num: number, len: number): void {
    if (num < this.last) throw new RangeError(`option ${num} written after ${this.last}`);
    const delta = num - this.last;
    this.last = num;
    if (this.pos + 5 + len > this.buf.length) throw new RangeError('message too large');
    const b = this.buf;
    const at = this.pos++;
    let h: number;
    if (delta < 13) h = delta << 4;
    else if (delta < 269) {
      h = 13 << 4;
      b[this.pos++] = delta - 13;
    } else {
      h = 14 << 4;
      b[this.pos++] = (delta - 269) >> 8;
      b[this.pos++] = (delta - 269) & 0xff;
    }
    if (len < 13) h |= len;
    else if (len < 269) {
      h |= 13;
      b[this.pos++] = len - 13;
    } else {
      h |= 14;
      b[this.pos++] = (len - 269) >> 8;
      b[this.pos++] = (len - 269) & 0xff;
    }
    b[at] = h;
  }

  /** Append an opaque/string option. */
  option(num: number, value: Buffer): this {
    this.header(num, value.length);
    value.copy(this.buf, this.pos);
    this.pos += value.length;
    return this;
  }

  /** Append a uint option in its minimal encoding (§3.2). */
  optionUint(num: number, v: number): this {
    const n = uintLength(v);
    this.header(num, n);
    for (let k = n - 1, x = v; k >= 0; k--, x = Math.floor(x / 256)) this.buf[this.pos + k] = x & 0xff;
    this.pos += n;
    return this;
  }

  /** Append the payload marker and payload (nothing for an empty payload, §3). */
  payload(p: Buffer, start = 0, end = p.length): this {
    const n = end - start;
    if (n <= 0) return this;
    if (this.pos + 1 + n > this.buf.length) throw new RangeError('message too large');
    this.buf[this.pos++] = 0xff;
    p.copy(this.buf, this.pos, start, end);
    this.pos += n;
    return this;
  }

  /** Copy the message out. */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }
}

/** A 4-byte Empty message (§4.1): RST or empty ACK with the given Message ID. */
export function emptyMessage(type: typeof TYPE_ACK | typeof TYPE_RST, messageId: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = 0x40 | (type << 4);
  b[1] = 0;
  b[2] = (messageId >> 8) & 0xff;
  b[3] = messageId & 0xff;
  return b;
}
