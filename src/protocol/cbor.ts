/**
 * CBOR for the wire contract (PROTOCOL.md §2, RFC 8949).
 *
 * Decoding uses one configured cbor-x Decoder (DESIGN.md) behind {@link decodeCbor}, which turns every
 * failure (truncation, trailing bytes, bad headers) into `ProvError('malformed')`.
 *
 * Encoding uses {@link encodeCanonical}, a small core-deterministic encoder (RFC 8949 §4.2.1: shortest
 * heads, definite lengths, map keys sorted bytewise by their encoding). It is ours rather than cbor-x's
 * because cbor-x, even configured as DESIGN.md says, writes integers ≥ 2^32 as float64 and leaves map
 * order to the caller — both break "equal content gives equal bytes" (measured: `2**32` encodes as
 * `fb41f0000000000000`).
 */
import { Decoder } from 'cbor-x';
import { ProvError } from '../errors.ts';

/** Values the canonical encoder accepts. Maps use `Map` so integer keys stay integers. */
export type CborValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | Uint8Array
  | readonly CborValue[]
  | ReadonlyMap<number | string, CborValue>
  | CborTagged;

/** A tagged item (major type 6). */
export class CborTagged {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {}
}

const decoder = new Decoder({ useRecords: false, mapsAsObjects: false, structuredClone: false } as never);

/** Upper bound on any CBOR item this server decodes (requests are ≤ 1024 bytes; tokens are smaller). */
export const MAX_CBOR_BYTES = 4096;
/** Deepest nesting of arrays, maps and tags accepted (idprov uses 3; deeper input would overflow the stack). */
export const MAX_CBOR_DEPTH = 32;

/**
 * Decode exactly one CBOR item. Maps come back as `Map`, byte strings as `Uint8Array` (Buffer),
 * tag 18 as a cbor-x `Tag` object (`{tag, value}`), integers with an 8-byte head (≥ 2^32) as `bigint`.
 * @throws ProvError `malformed` on empty, oversized, truncated or trailing input, and on anything
 *   outside the idprov subset (see `checkSubset`: floats, undefined, simple values, tags other than 18).
 */
export function decodeCbor(bytes: Uint8Array, what = 'CBOR item'): unknown {
  if (bytes.length === 0) throw new ProvError('malformed', `${what}: empty`);
  if (bytes.length > MAX_CBOR_BYTES) throw new ProvError('malformed', `${what}: longer than ${MAX_CBOR_BYTES} bytes`);
  checkSubset(bytes, what);
  try {
    return decoder.decode(bytes);
  } catch (e) {
    throw new ProvError('malformed', `${what}: ${(e as Error).message}`);
  }
}

/**
 * The CBOR subset of idprov v1: integers, byte and text strings, arrays, maps, false/true/null and tag 18
 * (COSE_Sign1). Everything else is malformed, under unknown keys too, because cbor-x turns it into values
 * that cannot be told apart from the types the protocol expects: floats (`1.0` → 1, also as a map key),
 * decimal fractions (`4([0, 1])` → 1), self-describe / shareable / set-as-map tags (`55799(1)`, `28(1)`
 * → 1), typed arrays (`64(h'…')` → a byte string) and `undefined` (a known key that reads as absent).
 * Without this a known key with the wrong type would pass (PROTOCOL.md §2: it is 4.00).
 * Maps with duplicate keys are refused too. Walks the heads only; no values are built. Nesting is
 * limited to {@link MAX_CBOR_DEPTH}.
 */
function checkSubset(b: Uint8Array, what: string): void {
  const fail = (why: string): never => {
    throw new ProvError('malformed', `${what}: ${why}`);
  };
  // RFC 8949 §5.6: a map with duplicate keys is not valid; refusing it removes any doubt about which
  // value the server (or a signer) saw. Keys are compared by their encoded bytes.
  const uniqueKey = (keys: Set<string>, start: number, end: number): void => {
    const k = Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
    if (keys.has(k)) fail('duplicate map key');
    keys.add(k);
  };
  const item = (pos: number, depth: number): number => {
    if (pos >= b.length) fail('truncated');
    const ib = b[pos++]!;
    const major = ib >> 5;
    const ai = ib & 0x1f;
    if (major >= 4 && major <= 6 && depth >= MAX_CBOR_DEPTH) fail(`arrays, maps and tags nested deeper than ${MAX_CBOR_DEPTH}`);
    if (major === 7) {
      if (ai >= 20 && ai <= 22) return pos;
      return fail(ai >= 25 && ai <= 27 ? 'floating-point values are not used by idprov' : `simple value or break (0x${ib.toString(16)}) is not used by idprov`);
    }
    if (ai === 31) {
      if (major !== 4 && major !== 5) fail('indefinite length is only accepted for arrays and maps');
      const keys = major === 5 ? new Set<string>() : undefined;
      for (;;) {
        if (pos >= b.length) fail('truncated');
        if (b[pos] === 0xff) return pos + 1;
        const start = pos;
        pos = item(pos, depth + 1);
        if (keys) {
          uniqueKey(keys, start, pos);
          pos = item(pos, depth + 1);
        }
      }
    }
    let n = ai;
    if (ai >= 24) {
      if (ai > 27) fail(`reserved additional information ${ai}`);
      const len = 1 << (ai - 24);
      if (pos + len > b.length) fail('truncated');
      n = 0;
      for (let i = 0; i < len; i++) n = n * 256 + b[pos + i]!;
      pos += len;
    }
    switch (major) {
      case 2:
      case 3:
        if (n > b.length - pos) fail('truncated');
        return pos + n;
      case 4:
        if (n > b.length - pos) fail('truncated');
        for (let i = 0; i < n; i++) pos = item(pos, depth + 1);
        return pos;
      case 5: {
        if (n > b.length - pos) fail('truncated');
        const keys = new Set<string>();
        for (let i = 0; i < n; i++) {
          const start = pos;
          pos = item(pos, depth + 1);
          uniqueKey(keys, start, pos);
          pos = item(pos, depth + 1);
        }
        return pos;
      }
      case 6:
        if (n !== 18) fail(`tag ${n} is not used by idprov`);
        return item(pos, depth + 1);
      default:
        return pos;
    }
  };
  if (item(0, 0) !== b.length) fail('trailing bytes after the item');
}

/** A cbor-x Tag as decoded: `{ tag, value }`. */
export function asTag(v: unknown): { tag: number; value: unknown } | undefined {
  if (v !== null && typeof v === 'object' && !(v instanceof Map) && !(v instanceof Uint8Array) && !Array.isArray(v)) {
    const t = v as { tag?: unknown; value?: unknown };
    if (typeof t.tag === 'number' && 'value' in t) return { tag: t.tag, value: t.value };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Canonical encoder

class Writer {
  buf = Buffer.allocUnsafe(256);
  pos = 0;
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  head(major: number, n: number | bigint): void {
    this.ensure(9);
    const m = major << 5;
    if (typeof n === 'bigint') {
      if (n < 0n || n > 0xffffffffffffffffn) throw new RangeError('CBOR integer out of range');
      if (n <= 0xffffffffn) return this.head(major, Number(n));
      this.buf[this.pos++] = m | 27;
      this.buf.writeBigUInt64BE(n, this.pos);
      this.pos += 8;
      return;
    }
    if (n < 24) this.buf[this.pos++] = m | n;
    else if (n < 0x100) {
      this.buf[this.pos++] = m | 24;
      this.buf[this.pos++] = n;
    } else if (n < 0x10000) {
      this.buf[this.pos++] = m | 25;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else if (n < 0x100000000) {
      this.buf[this.pos++] = m | 26;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    } else {
      this.buf[this.pos++] = m | 27;
      this.buf.writeBigUInt64BE(BigInt(n), this.pos);
      this.pos += 8;
    }
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

function write(w: Writer, v: CborValue): void {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RangeError(`canonical CBOR encodes integers only, got ${v}`);
    if (v >= 0) w.head(0, v);
    else w.head(1, -1 - v);
  } else if (typeof v === 'bigint') {
    if (v >= 0n) w.head(0, v);
    else w.head(1, -1n - v);
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    w.head(3, b.length);
    w.bytes(b);
  } else if (v instanceof Uint8Array) {
    w.head(2, v.length);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.head(4, v.length);
    for (const item of v as readonly CborValue[]) write(w, item);
  } else if (v instanceof Map) {
    // RFC 8949 §4.2.1: sort keys by the bytewise order of their deterministic encodings.
    const entries = [...(v as ReadonlyMap<number | string, CborValue>)].map(([k, val]) => [encodeCanonical(k), val] as const);
    entries.sort((a, b) => Buffer.compare(a[0], b[0]));
    w.head(5, entries.length);
    for (const [k, val] of entries) {
      w.bytes(k);
      write(w, val);
    }
  } else if (v instanceof CborTagged) {
    w.head(6, v.tag);
    write(w, v.value);
  } else if (v === false) {
    w.ensure(1);
    w.buf[w.pos++] = 0xf4;
  } else if (v === true) {
    w.ensure(1);
    w.buf[w.pos++] = 0xf5;
  } else if (v === null) {
    w.ensure(1);
    w.buf[w.pos++] = 0xf6;
  } else {
    throw new TypeError(`cannot encode ${typeof v} as canonical CBOR`);
  }
}

/** Encode `v` as core deterministic CBOR (RFC 8949 §4.2.1). */
export function encodeCanonical(v: CborValue): Buffer {
  const w = new Writer();
  write(w, v);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

/** Build a `Map` from entries, dropping those whose value is `undefined`. */
export function cborMap(entries: ReadonlyArray<readonly [number | string, CborValue | undefined]>): Map<number | string, CborValue> {
  const m = new Map<number | string, CborValue>();
  for (const [k, v] of entries) if (v !== undefined) m.set(k, v);
  return m;
}
