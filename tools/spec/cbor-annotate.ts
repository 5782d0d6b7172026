/**
 * CBOR for people: byte-by-byte annotation (hex on the left, meaning on the right, as cbor.me prints
 * it) and RFC 8949 §8 diagnostic notation, both guided by a {@link Schema} that names the keys of the
 * idprov/coap v1 structures and says which byte strings hold embedded CBOR. Written from the RFC for
 * the spec's exchange vectors (tools/spec/exchange-vectors.ts); it reads definite-length items only,
 * which is all the server and the vectors' device emit.
 */

/** What a CBOR item means: its name, the names of its map keys, and embedded CBOR inside a bstr. */
export interface Schema {
  name?: string;
  /** Map keys (as `String(key)`) → what the value means. */
  map?: Record<string, Schema>;
  /** Every array element. */
  items?: Schema;
  /** Array elements by position. */
  tuple?: Schema[];
  /** The byte string holds one CBOR item described by this schema. */
  embedded?: Schema;
  /** Names of integer values (`-8` → `EdDSA`). */
  values?: Record<string, string>;
  /** An integer that is a time in seconds since the epoch. */
  time?: boolean;
  /** A 24-byte idprov server nonce: show its three parts. */
  nonce?: boolean;
}

/** One annotated line. */
export interface Line {
  depth: number;
  bytes: Uint8Array;
  comment: string;
}

interface Head {
  major: number;
  /** The argument (length, value, tag number). */
  arg: number;
  /** Bytes of the head. */
  len: number;
}

function head(b: Uint8Array, pos: number): Head {
  if (pos >= b.length) throw new RangeError('CBOR truncated');
  const ib = b[pos]!;
  const major = ib >> 5;
  const ai = ib & 0x1f;
  if (ai < 24) return { major, arg: ai, len: 1 };
  if (ai > 27) throw new RangeError(`CBOR additional information ${ai} is not supported here`);
  const n = 1 << (ai - 24);
  if (pos + 1 + n > b.length) throw new RangeError('CBOR truncated');
  let arg = 0;
  for (let i = 0; i < n; i++) arg = arg * 256 + b[pos + 1 + i]!;
  return { major, arg, len: 1 + n };
}

/** The end offset of the item at `pos`. */
function skip(b: Uint8Array, pos: number): number {
  const h = head(b, pos);
  let p = pos + h.len;
  switch (h.major) {
    case 2:
    case 3:
      return p + h.arg;
    case 4:
      for (let i = 0; i < h.arg; i++) p = skip(b, p);
      return p;
    case 5:
      for (let i = 0; i < 2 * h.arg; i++) p = skip(b, p);
      return p;
    case 6:
      return skip(b, p);
    default:
      return p;
  }
}

/** True when `b` is exactly one well-formed definite-length item. */
function isOneItem(b: Uint8Array): boolean {
  try {
    return b.length > 0 && skip(b, 0) === b.length;
  } catch {
    return false;
  }
}

const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const iso = (s: number): string => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

/** A scalar's value, for comments and diagnostic notation, with value names and times. */
function scalarNote(value: number, s: Schema | undefined): string {
  const named = s?.values?.[String(value)];
  if (named) return ` (${named})`;
  if (s?.time) return ` (${iso(value)})`;
  return '';
}

/** Annotate the item at `pos`; returns its end. */
function annotateItem(b: Uint8Array, pos: number, depth: number, s: Schema | undefined, out: Line[], prefix = ''): number {
  const h = head(b, pos);
  const at = (from: number, to: number): Uint8Array => b.subarray(from, to);
  const body = pos + h.len;
  const who = prefix + (s?.name ?? '');
  const tail = who ? ` ${who}` : '';
  switch (h.major) {
    case 0:
    case 1: {
      const v = h.major === 0 ? h.arg : -1 - h.arg;
      out.push({ depth, bytes: at(pos, body), comment: `${h.major === 0 ? 'unsigned' : 'negative'} ${v}${scalarNote(v, s)}${who ? ` —${tail}` : ''}` });
      return body;
    }
    case 2: {
      const end = body + h.arg;
      const content = at(body, end);
      if (s?.embedded && isOneItem(content)) {
        out.push({ depth, bytes: at(pos, body), comment: `bytes(${h.arg}) holding CBOR${who ? ` —${tail}` : ''}` });
        annotateItem(content, 0, depth + 1, s.embedded, out);
        return end;
      }
      if (s?.nonce && h.arg === 24) {
        out.push({ depth, bytes: at(pos, body), comment: `bytes(24)${who ? ` —${tail}` : ''}` });
        const exp = Buffer.from(content).readUInt32BE(0);
        out.push({ depth: depth + 1, bytes: content.subarray(0, 4), comment: `expiry ${exp} (${iso(exp)})` });
        out.push({ depth: depth + 1, bytes: content.subarray(4, 12), comment: 'random' });
        out.push({ depth: depth + 1, bytes: content.subarray(12, 24), comment: 'MAC (HMAC-SHA256, first 12 bytes)' });
        return end;
      }
      if (h.len + h.arg <= 16) {
        out.push({ depth, bytes: at(pos, end), comment: `bytes(${h.arg})${who ? ` —${tail}` : ''}` });
        return end;
      }
      out.push({ depth, bytes: at(pos, body), comment: `bytes(${h.arg})${who ? ` —${tail}` : ''}` });
      for (let p = body; p < end; p += 16) out.push({ depth: depth + 1, bytes: at(p, Math.min(p + 16, end)), comment: '' });
      return end;
    }
    case 3: {
      const end = body + h.arg;
      const text = Buffer.from(at(body, end)).toString('utf8');
      if (h.len + h.arg <= 16) {
        out.push({ depth, bytes: at(pos, end), comment: `text(${h.arg}) ${JSON.stringify(text)}${who ? ` —${tail}` : ''}` });
        return end;
      }
      out.push({ depth, bytes: at(pos, body), comment: `text(${h.arg}) ${JSON.stringify(text)}${who ? ` —${tail}` : ''}` });
      for (let p = body; p < end; p += 16) out.push({ depth: depth + 1, bytes: at(p, Math.min(p + 16, end)), comment: '' });
      return end;
    }
    case 4: {
      out.push({ depth, bytes: at(pos, body), comment: `array(${h.arg})${who ? ` —${tail}` : ''}` });
      let p = body;
      for (let i = 0; i < h.arg; i++) p = annotateItem(b, p, depth + 1, s?.tuple?.[i] ?? s?.items, out);
      return p;
    }
    case 5: {
      out.push({ depth, bytes: at(pos, body), comment: `map(${h.arg})${who ? ` —${tail}` : ''}` });
      let p = body;
      for (let i = 0; i < h.arg; i++) {
        const kEnd = skip(b, p);
        const key = diagItem(b, p, undefined);
        const vs = s?.map?.[keyName(b, p)];
        out.push({ depth: depth + 1, bytes: at(p, kEnd), comment: `key ${key}${vs?.name ? ` (${vs.name})` : ''}` });
        p = annotateItem(b, kEnd, depth + 2, vs ? { ...vs, name: '' } : undefined, out);
      }
      return p;
    }
    case 6:
      out.push({ depth, bytes: at(pos, body), comment: `tag ${h.arg}${h.arg === 18 ? ' (COSE_Sign1)' : ''}` });
      return annotateItem(b, body, depth + 1, s, out);
    default: {
      const names: Record<number, string> = { 20: 'false', 21: 'true', 22: 'null' };
      out.push({ depth, bytes: at(pos, body), comment: names[h.arg] ?? `simple ${h.arg}` });
      return body;
    }
  }
}

/** The lookup key of a map key: `String(int)` or the text. */
function keyName(b: Uint8Array, pos: number): string {
  const h = head(b, pos);
  if (h.major === 0) return String(h.arg);
  if (h.major === 1) return String(-1 - h.arg);
  if (h.major === 3) return Buffer.from(b.subarray(pos + h.len, pos + h.len + h.arg)).toString('utf8');
  return '';
}

/** Annotate one CBOR item byte by byte. */
export function annotateCbor(b: Uint8Array, s?: Schema): Line[] {
  const out: Line[] = [];
  const end = annotateItem(b, 0, 0, s, out);
  if (end !== b.length) throw new RangeError('trailing bytes after the CBOR item');
  return out;
}

function diagItem(b: Uint8Array, pos: number, s: Schema | undefined): string {
  const h = head(b, pos);
  const body = pos + h.len;
  switch (h.major) {
    case 0:
      return String(h.arg);
    case 1:
      return String(-1 - h.arg);
    case 2: {
      const content = b.subarray(body, body + h.arg);
      if (s?.embedded && isOneItem(content)) return `<< ${diagItem(content, 0, s.embedded)} >>`;
      return `h'${hexOf(content)}'`;
    }
    case 3:
      return JSON.stringify(Buffer.from(b.subarray(body, body + h.arg)).toString('utf8'));
    case 4: {
      const parts: string[] = [];
      let p = body;
      for (let i = 0; i < h.arg; i++) {
        parts.push(diagItem(b, p, s?.tuple?.[i] ?? s?.items));
        p = skip(b, p);
      }
      return `[${parts.join(', ')}]`;
    }
    case 5: {
      const parts: string[] = [];
      let p = body;
      for (let i = 0; i < h.arg; i++) {
        const k = diagItem(b, p, undefined);
        const vs = s?.map?.[keyName(b, p)];
        p = skip(b, p);
        parts.push(`${k}: ${diagItem(b, p, vs)}`);
        p = skip(b, p);
      }
      return `{${parts.join(', ')}}`;
    }
    case 6:
      return `${h.arg}(${diagItem(b, body, s)})`;
    default:
      return ({ 20: 'false', 21: 'true', 22: 'null' } as Record<number, string>)[h.arg] ?? `simple(${h.arg})`;
  }
}

/** RFC 8949 §8 diagnostic notation of one item, embedded CBOR shown as `<< … >>` where the schema says so. */
export function diagnostic(b: Uint8Array, s?: Schema): string {
  if (!isOneItem(b)) throw new RangeError('not exactly one well-formed CBOR item');
  return diagItem(b, 0, s);
}

/** Lines as text: hex at the left (indented by depth), `# comment` from column `col`. */
export function renderLines(lines: readonly Line[], col = 50): string {
  return lines
    .map((l) => {
      const left = '   '.repeat(l.depth) + [...l.bytes].map((x) => x.toString(16).padStart(2, '0')).join(' ');
      if (!l.comment) return left;
      return `${left.length < col ? left.padEnd(col) : `${left}  `}# ${l.comment}`;
    })
    .join('\n');
}
