/**
 * CoAP datagrams (RFC 7252 §3) for the spec's exchange vectors: a minimal request encoder written from
 * the RFC (so the request bytes do not come from the server's own codec), and an annotator that
 * explains a datagram field by field and hands the payload to the CBOR annotator.
 */
import { annotateCbor, type Line, type Schema } from './cbor-annotate.ts';

/** One option: number and raw value. */
export interface Opt {
  number: number;
  value: Uint8Array;
}

/** Option names (RFC 7252 §5.10, RFC 7959, RFC 7641). */
export const OPTION_NAMES: Record<number, string> = {
  1: 'If-Match',
  3: 'Uri-Host',
  4: 'ETag',
  5: 'If-None-Match',
  6: 'Observe',
  7: 'Uri-Port',
  8: 'Location-Path',
  11: 'Uri-Path',
  12: 'Content-Format',
  14: 'Max-Age',
  15: 'Uri-Query',
  17: 'Accept',
  20: 'Location-Query',
  23: 'Block2',
  27: 'Block1',
  28: 'Size2',
  35: 'Proxy-Uri',
  39: 'Proxy-Scheme',
  60: 'Size1',
};

/** Content-Formats idprov uses (RFC 7252 §12.3, RFC 9052 §11, RFC 6690). */
export const CONTENT_FORMATS: Record<number, string> = {
  0: 'text/plain; charset=utf-8',
  18: 'application/cose; cose-type="cose-sign1"',
  40: 'application/link-format',
  60: 'application/cbor',
  102: 'application/cose-key-set',
};

const TYPES = ['CON', 'NON', 'ACK', 'RST'] as const;

/** Response and method code names. */
export const CODE_NAMES: Record<string, string> = {
  '0.00': 'Empty',
  '0.01': 'GET',
  '0.02': 'POST',
  '0.03': 'PUT',
  '0.04': 'DELETE',
  '2.01': 'Created',
  '2.05': 'Content',
  '4.00': 'Bad Request',
  '4.01': 'Unauthorized',
  '4.02': 'Bad Option',
  '4.03': 'Forbidden',
  '4.04': 'Not Found',
  '4.05': 'Method Not Allowed',
  '4.06': 'Not Acceptable',
  '4.13': 'Request Entity Too Large',
  '4.15': 'Unsupported Content-Format',
  '4.29': 'Too Many Requests',
  '5.00': 'Internal Server Error',
  '5.03': 'Service Unavailable',
  '5.05': 'Proxying Not Supported',
};

/** `c.dd` of a code byte. */
export function codeString(code: number): string {
  return `${code >> 5}.${String(code & 31).padStart(2, '0')}`;
}

/** An option value holding an unsigned integer, in the fewest bytes (RFC 7252 §3.2: 0 is empty). */
export function uintValue(v: number): Uint8Array {
  const out: number[] = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) out.unshift(x & 0xff);
  return Uint8Array.from(out);
}

function uintOf(b: Uint8Array): number {
  let v = 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

/** The 4-bit nibble and extension bytes for an option delta or length (RFC 7252 §3.1). */
function nibble(n: number): [number, number[]] {
  if (n < 13) return [n, []];
  if (n < 269) return [13, [n - 13]];
  return [14, [(n - 269) >> 8, (n - 269) & 0xff]];
}

/** Encode a message (RFC 7252 §3). Options are sorted by number. */
export function encodeMessage(m: { type: 0 | 1 | 2 | 3; code: string; messageId: number; token: Uint8Array; options: Opt[]; payload?: Uint8Array }): Buffer {
  const [c, dd] = m.code.split('.').map(Number) as [number, number];
  const out: number[] = [0x40 | (m.type << 4) | m.token.length, (c << 5) | dd, m.messageId >> 8, m.messageId & 0xff, ...m.token];
  let last = 0;
  for (const o of [...m.options].sort((a, b) => a.number - b.number)) {
    const [d, dx] = nibble(o.number - last);
    const [l, lx] = nibble(o.value.length);
    out.push((d << 4) | l, ...dx, ...lx, ...o.value);
    last = o.number;
  }
  if (m.payload && m.payload.length > 0) out.push(0xff, ...m.payload);
  return Buffer.from(out);
}

/** Uri-Path and Uri-Query options of `/a/b?x=1`. */
export function uriOptions(uri: string): Opt[] {
  const [path, query] = uri.split('?', 2) as [string, string | undefined];
  const opts: Opt[] = path
    .split('/')
    .filter((s) => s !== '')
    .map((s) => ({ number: 11, value: Buffer.from(s, 'utf8') }));
  if (query !== undefined) for (const q of query.split('&')) opts.push({ number: 15, value: Buffer.from(q, 'utf8') });
  return opts;
}

/** A decoded datagram (what the spec test checks and the annotator explains). */
export interface Decoded {
  type: (typeof TYPES)[number];
  code: string;
  messageId: number;
  token: Uint8Array;
  options: Opt[];
  payload: Uint8Array;
  contentFormat?: number;
  maxAge?: number;
}

/** Decode a datagram written by {@link encodeMessage} or by the server. */
export function decodeMessage(b: Uint8Array): Decoded {
  if (b.length < 4 || b[0]! >> 6 !== 1) throw new RangeError('not a CoAP version 1 message');
  const tkl = b[0]! & 15;
  let p = 4 + tkl;
  const options: Opt[] = [];
  let num = 0;
  while (p < b.length && b[p] !== 0xff) {
    const ext = (n: number): number => {
      if (n === 13) return 13 + b[p++]!;
      if (n === 14) {
        const v = 269 + (b[p]! << 8) + b[p + 1]!;
        p += 2;
        return v;
      }
      return n;
    };
    const first = b[p++]!;
    num += ext(first >> 4);
    const len = ext(first & 15);
    options.push({ number: num, value: b.subarray(p, p + len) });
    p += len;
  }
  const payload = p < b.length ? b.subarray(p + 1) : new Uint8Array(0);
  const d: Decoded = { type: TYPES[(b[0]! >> 4) & 3]!, code: codeString(b[1]!), messageId: (b[2]! << 8) | b[3]!, token: b.subarray(4, 4 + tkl), options, payload };
  const cf = options.find((o) => o.number === 12);
  if (cf) d.contentFormat = uintOf(cf.value);
  const ma = options.find((o) => o.number === 14);
  if (ma) d.maxAge = uintOf(ma.value);
  return d;
}

const TEXT_OPTIONS = new Set([3, 8, 11, 15, 20, 35, 39]);

/**
 * Explain a datagram line by line. The payload is annotated byte by byte with `payload` (a CBOR
 * schema), shown as text, as bare hex (`'raw'`), or left out (`'none'`: the caller prints it another
 * way).
 */
export function annotateMessage(b: Uint8Array, payload: Schema | 'text' | 'cbor' | 'none' | 'raw'): Line[] {
  const d = decodeMessage(b);
  const lines: Line[] = [];
  const tkl = d.token.length;
  lines.push({
    depth: 0,
    bytes: b.subarray(0, 4),
    comment: `ver 1, ${d.type}, token length ${tkl}, code ${d.code} ${CODE_NAMES[d.code] ?? ''}, message ID 0x${d.messageId.toString(16).padStart(4, '0')}`.replace(/ ,/, ','),
  });
  if (tkl > 0) lines.push({ depth: 0, bytes: d.token, comment: 'token' });
  let p = 4 + tkl;
  let last = 0;
  for (const o of d.options) {
    const start = p;
    const first = b[p++]!;
    if (first >> 4 === 13) p += 1;
    else if (first >> 4 === 14) p += 2;
    if ((first & 15) === 13) p += 1;
    else if ((first & 15) === 14) p += 2;
    p += o.value.length;
    const name = OPTION_NAMES[o.number] ?? `option ${o.number}`;
    let value: string;
    if (TEXT_OPTIONS.has(o.number)) value = JSON.stringify(Buffer.from(o.value).toString('utf8'));
    else if (o.number === 4) value = `0x${Buffer.from(o.value).toString('hex')}`;
    else {
      const v = uintOf(o.value);
      value = String(v);
      if (o.number === 12 || o.number === 17) value += ` (${CONTENT_FORMATS[v] ?? 'unknown'})`;
      if (o.number === 14) value += ' s';
      if (o.number === 23 || o.number === 27) value += ` (NUM ${v >> 4}, M ${(v >> 3) & 1}, SZX ${v & 7})`;
    }
    lines.push({ depth: 0, bytes: b.subarray(start, p), comment: `${name} (option ${o.number} = delta ${o.number - last}, length ${o.value.length}): ${value}` });
    last = o.number;
  }
  if (d.payload.length > 0) {
    lines.push({ depth: 0, bytes: b.subarray(p, p + 1), comment: 'payload marker' });
    if (payload === 'none') {
      lines.push({ depth: 0, bytes: new Uint8Array(0), comment: `${d.payload.length} bytes of payload follow` });
    } else if (payload === 'raw') {
      for (let i = 0; i < d.payload.length; i += 16) {
        lines.push({ depth: 0, bytes: d.payload.subarray(i, Math.min(i + 16, d.payload.length)), comment: i === 0 ? 'not one complete CBOR item' : '' });
      }
    } else if (payload === 'text') {
      for (let i = 0; i < d.payload.length; i += 16) {
        const chunk = d.payload.subarray(i, Math.min(i + 16, d.payload.length));
        lines.push({ depth: 0, bytes: chunk, comment: JSON.stringify(Buffer.from(chunk).toString('utf8')) });
      }
    } else {
      lines.push(...annotateCbor(d.payload, payload === 'cbor' ? undefined : payload));
    }
  }
  return lines;
}
