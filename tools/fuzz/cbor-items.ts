/**
 * A lenient walk over CBOR heads for structure-aware mutations: where each item starts and ends, and
 * where heads can be lengthened. Never throws; stops at the first thing it cannot read.
 */

/** One item found: `[start, end)` in the input, its major type and where its head's argument ends. */
export interface CborSpan {
  start: number;
  end: number;
  major: number;
  headEnd: number;
}

/** Every item (nested ones too) of the CBOR sequence in `b`, in order of their start, at most `limit`. */
export function cborSpans(b: Uint8Array, limit = 256): CborSpan[] {
  const out: CborSpan[] = [];
  const item = (pos: number, depth: number): number => {
    if (pos >= b.length || depth > 40 || out.length >= limit) return -1;
    const start = pos;
    const ib = b[pos++]!;
    const major = ib >> 5;
    const ai = ib & 0x1f;
    let n = ai;
    if (ai >= 24 && ai <= 27) {
      const len = 1 << (ai - 24);
      if (pos + len > b.length) return -1;
      n = 0;
      for (let i = 0; i < len; i++) n = n * 256 + b[pos + i]!;
      pos += len;
    } else if (ai > 27 && ai !== 31) return -1;
    const span: CborSpan = { start, end: -1, major, headEnd: pos };
    out.push(span);
    if (major === 7) {
      if (ai === 31) return -1;
    } else if (ai === 31) {
      if (major !== 2 && major !== 3 && major !== 4 && major !== 5) return -1;
      for (;;) {
        if (pos >= b.length) return -1;
        if (b[pos] === 0xff) {
          pos++;
          break;
        }
        pos = item(pos, depth + 1);
        if (pos < 0) return -1;
      }
    } else if (major === 2 || major === 3) {
      if (n > b.length - pos) return -1;
      pos += n;
    } else if (major === 4 || major === 5) {
      const count = major === 5 ? n * 2 : n;
      if (count > b.length - pos) return -1;
      for (let i = 0; i < count; i++) {
        pos = item(pos, depth + 1);
        if (pos < 0) return -1;
      }
    } else if (major === 6) {
      pos = item(pos, depth + 1);
      if (pos < 0) return -1;
    }
    span.end = pos;
    return pos;
  };
  let pos = 0;
  while (pos >= 0 && pos < b.length && out.length < limit) pos = item(pos, 0);
  return out.filter((s) => s.end > s.start);
}

/** The same head as `b[span.start .. span.headEnd)` written one size longer (non-shortest), or undefined. */
export function lengthenHead(b: Uint8Array, span: CborSpan): Buffer | undefined {
  const ib = b[span.start]!;
  const ai = ib & 0x1f;
  if (ai === 31 || ai === 27 || span.major === 7) return undefined;
  let n = 0;
  for (let i = span.start + 1; i < span.headEnd; i++) n = n * 256 + b[i]!;
  if (ai < 24) n = ai;
  const next = ai < 24 ? 24 : ai + 1;
  const len = 1 << (next - 24);
  const out = Buffer.alloc(1 + len);
  out[0] = (span.major << 5) | next;
  for (let i = len; i >= 1; i--, n = Math.floor(n / 256)) out[i] = n % 256;
  return out;
}
