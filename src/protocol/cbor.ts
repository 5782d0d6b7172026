/**
 * CBOR for the wire contract (docs/spec/idprov-coap-v1.md §2, RFC 8949).
 *
 * Decoding uses one configured cbor-x Decoder (docs/architecture.md "cbor-x configuration") behind {@link decodeCbor}, which turns every
 * failure (truncation, trailing bytes, bad headers) into `ProvError('malformed')`.
 *
 * Encoding uses {@link encodeCanonical}, a small core-deterministic encoder (RFC 8949 §4.2.1: shortest
 * heads, definite lengths, map keys sorted bytewise by their encoding). It is ours rather than cbor-x's
 * because cbor-x, even configured as docs/architecture.md "cbor-x configuration" says, writes integers ≥ 2^32 as float64 and leaves map
 * order to the caller — both break "equal content gives equal bytes" (measured: `2**32` encodes as
 * `fb41f0000000000000`).
 */
import { isUtf8 } from 'node:buffer';
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
 * tag 18 as a cbor-x `Tag` object (`{tag, value}`). Integers are read by value: from -2^32 to 2^32 - 1 as
 * `number`, beyond as `bigint`, whatever head length they were written with (docs/spec/idprov-coap-v1.md §2: a
 * longer-than-shortest form equals the shortest one).
 * @throws ProvError `malformed` on empty, oversized, truncated or trailing input, and on anything
 *   outside the idprov subset (see `checkSubset`: floats, undefined, simple values, tags other than 18).
 */
export function decodeCbor(bytes: Uint8Array, what = 'CBOR item'): unknown {
  if (bytes.length === 0) throw new ProvError('malformed', `${what}: empty`);
  if (bytes.length > MAX_CBOR_BYTES) throw new ProvError('malformed', `${what}: longer than ${MAX_CBOR_BYTES} bytes`);
  const normalise = checkSubset(bytes, what);
  try {
    const v: unknown = decoder.decode(bytes);
    return normalise ? normaliseIntegers(v) : v;
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
 * Without this a known key with the wrong type would pass (docs/spec/idprov-coap-v1.md §2: it is 4.00).
 * Text strings must be valid UTF-8 (RFC 8949 §3.1): cbor-x would turn every invalid sequence into U+FFFD,
 * so two different keys could read as one.
 * Maps with two keys of equal value are refused (docs/spec/idprov-coap-v1.md §2, RFC 8949 §5.6), whatever their
 * encodings: an integer written with a longer-than-shortest head equals its shortest form, an
 * indefinite-length array equals the definite one, maps compare as sets of entries.
 * Walks the heads only; no values are built. Nesting is limited to {@link MAX_CBOR_DEPTH}.
 * @returns true when an integer below 2^32 was written with an 8-byte head (cbor-x reads it as a
 *   `bigint`; {@link decodeCbor} then normalises it to a number).
 */
function checkSubset(b: Uint8Array, what: string): boolean {
  const fail = (why: string): never => {
    throw new ProvError('malformed', `${what}: ${why}`);
  };
  let longSmallInt = false;
  /** Position after the item, and (when asked for) the item's value as a string: equal values, equal strings. */
  let id = '';
  const uniqueKey = (keys: Set<string>, k: string): void => {
    if (keys.has(k)) fail('duplicate map key');
    keys.add(k);
  };
  /** A map's value string: its entries sorted, so that key order does not matter. */
  const mapId = (entries: string[]): string => {
    entries.sort();
    return `m${entries.length}:${entries.join('')}`;
  };
  const item = (pos: number, depth: number, wantId: boolean): number => {
    if (pos >= b.length) fail('truncated');
    const ib = b[pos++]!;
    const major = ib >> 5;
    const ai = ib & 0x1f;
    if (major >= 4 && major <= 6 && depth >= MAX_CBOR_DEPTH) fail(`arrays, maps and tags nested deeper than ${MAX_CBOR_DEPTH}`);
    if (major === 7) {
      if (ai >= 20 && ai <= 22) {
        if (wantId) id = `s${ai}`;
        return pos;
      }
      return fail(ai >= 25 && ai <= 27 ? 'floating-point values are not used by idprov' : `simple value or break (0x${ib.toString(16)}) is not used by idprov`);
    }
    if (ai === 31) {
      if (major !== 4 && major !== 5) fail('indefinite length is only accepted for arrays and maps');
      return major === 4 ? array(pos, -1, depth, wantId) : map(pos, -1, depth, wantId);
    }
    let n = ai;
    /** The argument as a decimal string (exact for 8-byte heads too). */
    let arg: string | undefined;
    if (ai >= 24) {
      if (ai > 27) fail(`reserved additional information ${ai}`);
      const len = 1 << (ai - 24);
      if (pos + len > b.length) fail('truncated');
      n = 0;
      for (let i = 0; i < len; i++) n = n * 256 + b[pos + i]!;
      if (ai === 27) {
        const big = Buffer.from(b.buffer, b.byteOffset + pos, 8).readBigUInt64BE(0);
        arg = big.toString();
        if (big < 0x100000000n && major <= 1) longSmallInt = true;
      }
      pos += len;
    }
    switch (major) {
      case 0:
      case 1:
        if (wantId) id = `${major === 0 ? 'u' : 'n'}${arg ?? n};`;
        return pos;
      case 2:
      case 3: {
        if (n > b.length - pos) fail('truncated');
        if (major === 3 && !isUtf8(b.subarray(pos, pos + n))) fail('text string is not valid UTF-8');
        // Valid UTF-8 has one encoding per string, so equal bytes are equal values for both kinds.
        if (wantId) id = `${major === 2 ? 'b' : 't'}${n}:${Buffer.from(b.buffer, b.byteOffset + pos, n).toString('latin1')}`;
        return pos + n;
      }
      case 4:
        if (n > b.length - pos) fail('truncated');
        return array(pos, n, depth, wantId);
      case 5:
        if (n > b.length - pos) fail('truncated');
        return map(pos, n, depth, wantId);
      default: {
        // major 6
        if (n !== 18) fail(`tag ${arg ?? n} is not used by idprov`);
        const end = item(pos, depth + 1, wantId);
        if (wantId) id = `g18:${id}`;
        return end;
      }
    }
  };
  /** `n` items, or up to a break when `n` is -1. */
  const array = (pos: number, n: number, depth: number, wantId: boolean): number => {
    const parts: string[] | undefined = wantId ? [] : undefined;
    for (let i = 0; n < 0 || i < n; i++) {
      if (n < 0) {
        if (pos >= b.length) fail('truncated');
        if (b[pos] === 0xff) {
          pos++;
          break;
        }
      }
      pos = item(pos, depth + 1, wantId);
      parts?.push(id);
    }
    if (parts) id = `a${parts.length}:${parts.join('')}`;
    return pos;
  };
  const map = (pos: number, n: number, depth: number, wantId: boolean): number => {
    const keys = new Set<string>();
    const entries: string[] | undefined = wantId ? [] : undefined;
    for (let i = 0; n < 0 || i < n; i++) {
      if (n < 0) {
        if (pos >= b.length) fail('truncated');
        if (b[pos] === 0xff) {
          pos++;
          break;
        }
      }
      pos = item(pos, depth + 1, true);
      const k = id;
      uniqueKey(keys, k);
      pos = item(pos, depth + 1, wantId);
      entries?.push(`${k.length}:${k}${id}`);
    }
    if (entries) id = mapId(entries);
    return pos;
  };
  if (item(0, 0, false) !== b.length) fail('trailing bytes after the item');
  return longSmallInt;
}

/** Integers below 2^32 in magnitude as numbers, whatever head they were written with (see {@link decodeCbor}). */
function normaliseIntegers(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= -0x100000000n && v < 0x100000000n ? Number(v) : v;
  if (Array.isArray(v)) return v.map(normaliseIntegers);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [normaliseIntegers(k), normaliseIntegers(x)]));
  const t = asTag(v);
  if (t) (v as { value: unknown }).value = normaliseIntegers(t.value);
  return v;
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
    // Straight into the buffer: no intermediate Buffer per string.
    const n = Buffer.byteLength(v, 'utf8');
    w.head(3, n);
    w.ensure(n);
    w.pos += w.buf.write(v, w.pos, 'utf8');
  } else if (v instanceof Uint8Array) {
    w.head(2, v.length);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.head(4, v.length);
    for (const item of v as readonly CborValue[]) write(w, item);
  } else if (v instanceof Map) {
    // RFC 8949 §4.2.1: sort keys by the bytewise order of their deterministic encodings. The maps
    // idprov builds list their keys in that order already; only the others are sorted.
    const entries: Array<[Buffer, CborValue]> = [];
    let sorted = true;
    for (const [k, val] of v as ReadonlyMap<number | string, CborValue>) {
      const kb = keyBytes(k);
      if (sorted && entries.length > 0 && Buffer.compare(entries[entries.length - 1]![0], kb) > 0) sorted = false;
      entries.push([kb, val]);
    }
    if (!sorted) entries.sort((a, b) => Buffer.compare(a[0], b[0]));
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

/** The encodings of the integer map keys idprov uses (-24..23: one byte each), made once rather than per map. */
const SMALL_KEYS = Array.from({ length: 48 }, (_, i) => Buffer.from([i < 24 ? i : 0x20 + (i - 24)]));

/** A map key's deterministic encoding, to sort by and to write. */
function keyBytes(k: number | string): Buffer {
  if (typeof k === 'number' && Number.isInteger(k) && k >= -24 && k < 24) return SMALL_KEYS[k >= 0 ? k : 23 - k]!;
  return encodeCanonical(k);
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
