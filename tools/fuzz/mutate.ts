/**
 * AFL-style havoc mutations (bit and byte flips, interesting values, arithmetic, block deletion,
 * duplication and overwrite, dictionary tokens, splicing with another corpus input) plus CBOR-aware
 * ones: delete, duplicate, swap or wrap a whole item, lengthen a head to a non-shortest form, change a
 * container's count. Stacks 1–16 of them per input.
 */
import { cborSpans, lengthenHead } from './cbor-items.ts';
import type { Rng } from './rng.ts';

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 16, 23, 24, 25, 26, 27, 31, 32, 64, 100, 127];
const INTERESTING_16 = [0, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xffff, 1024, 4096, 16384, 18432];
const INTERESTING_32 = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 0xffff, 0x100000000 - 2];

/** What a mutation may draw on besides the input itself. */
export interface MutationContext {
  rng: Rng;
  maxLen: number;
  dictionary: readonly Buffer[];
  /** Other inputs to splice with. */
  corpus: readonly Buffer[];
  /** Use the CBOR-aware mutations too. */
  cbor: boolean;
}

function splice(b: Buffer, at: number, remove: number, insert: Uint8Array): Buffer {
  return Buffer.concat([b.subarray(0, at), insert, b.subarray(at + remove)]);
}

function writeInt(b: Buffer, at: number, v: number, size: 2 | 4, le: boolean): void {
  if (at + size > b.length) return;
  if (size === 2) (le ? b.writeUInt16LE : b.writeUInt16BE).call(b, v & 0xffff, at);
  else (le ? b.writeUInt32LE : b.writeUInt32BE).call(b, v >>> 0, at);
}

/** One byte-level mutation. */
function byteMutation(b: Buffer, c: MutationContext): Buffer {
  const { rng } = c;
  const pos = (): number => rng.below(b.length);
  const blockLen = (): number => 1 + rng.below(Math.min(32, Math.max(1, b.length)));
  switch (rng.below(15)) {
    case 0: {
      if (b.length === 0) break;
      const out = Buffer.from(b);
      const bit = rng.below(b.length * 8);
      out[bit >> 3]! ^= 0x80 >> (bit & 7);
      return out;
    }
    case 1: {
      if (b.length === 0) break;
      const out = Buffer.from(b);
      out[pos()] = rng.below(256);
      return out;
    }
    case 2: {
      if (b.length === 0) break;
      const out = Buffer.from(b);
      out[pos()] = rng.pick(INTERESTING_8);
      return out;
    }
    case 3: {
      const out = Buffer.from(b);
      writeInt(out, pos(), rng.pick(INTERESTING_16), 2, rng.chance(0.3));
      return out;
    }
    case 4: {
      const out = Buffer.from(b);
      writeInt(out, pos(), rng.pick(INTERESTING_32), 4, rng.chance(0.3));
      return out;
    }
    case 5: {
      if (b.length === 0) break;
      const out = Buffer.from(b);
      const at = pos();
      out[at] = (out[at]! + (rng.chance(0.5) ? 1 : -1) * (1 + rng.below(35))) & 0xff;
      return out;
    }
    case 6: {
      if (b.length < 2) break;
      const n = blockLen();
      return splice(b, rng.below(b.length - Math.min(n, b.length) + 1), n, Buffer.alloc(0));
    }
    case 7: {
      if (b.length === 0) break;
      const n = blockLen();
      const from = rng.below(b.length);
      return splice(b, rng.below(b.length + 1), 0, b.subarray(from, from + n));
    }
    case 8: {
      if (b.length < 2) break;
      const n = blockLen();
      const from = rng.below(b.length);
      const out = Buffer.from(b);
      b.copy(out, rng.below(b.length), from, from + n);
      return out;
    }
    case 9:
    case 10: {
      if (c.dictionary.length === 0) break;
      const tok = rng.pick(c.dictionary);
      if (rng.chance(0.5) || b.length === 0) return splice(b, rng.below(b.length + 1), 0, tok);
      const at = pos();
      return splice(b, at, Math.min(tok.length, b.length - at), tok);
    }
    case 11: {
      if (c.corpus.length === 0) break;
      const other = rng.pick(c.corpus);
      const cut = rng.below(b.length + 1);
      return Buffer.concat([b.subarray(0, cut), other.subarray(rng.below(other.length + 1))]);
    }
    case 12:
      if (b.length === 0) break;
      return b.subarray(0, rng.below(b.length));
    case 13: {
      const ins = Buffer.alloc(1 + rng.below(16));
      for (let i = 0; i < ins.length; i++) ins[i] = rng.below(256);
      return splice(b, rng.below(b.length + 1), 0, ins);
    }
    default: {
      // Repeat a block many times: long lines, deep nesting, many options.
      if (b.length === 0) break;
      const n = 1 + rng.below(8);
      const from = rng.below(b.length);
      const block = b.subarray(from, from + n);
      return splice(b, from, 0, Buffer.concat(new Array<Buffer>(2 + rng.below(64)).fill(block)));
    }
  }
  const out = Buffer.alloc(1);
  out[0] = rng.below(256);
  return Buffer.concat([b, out]);
}

/** One CBOR-aware mutation, or undefined when `b` has no items to work on. */
function cborMutation(b: Buffer, c: MutationContext): Buffer | undefined {
  const spans = cborSpans(b);
  if (spans.length === 0) return undefined;
  const { rng } = c;
  const s = rng.pick(spans);
  const itemBytes = b.subarray(s.start, s.end);
  switch (rng.below(8)) {
    case 0: // delete the item
      return splice(b, s.start, s.end - s.start, Buffer.alloc(0));
    case 1: // duplicate it (a duplicate map key or an extra array element, then a count change)
      return splice(b, s.end, 0, itemBytes);
    case 2: {
      // replace it by another item of this input or another one
      const src = rng.chance(0.5) ? b : rng.pick(c.corpus.length > 0 ? c.corpus : [b]);
      const other = cborSpans(src);
      if (other.length === 0) return undefined;
      const o = rng.pick(other);
      return splice(b, s.start, s.end - s.start, src.subarray(o.start, o.end));
    }
    case 3: {
      // lengthen the head: the same value in a non-shortest form
      const head = lengthenHead(b, s);
      return head ? splice(b, s.start, s.headEnd - s.start, head) : undefined;
    }
    case 4: // wrap in a one-element array, a tag 18, or a bstr .cbor
      return splice(b, s.start, s.end - s.start, Buffer.concat([rng.pick([Buffer.from([0x81]), Buffer.from([0xd2]), Buffer.from([0xd8, 0x12]), Buffer.from([0x40 | Math.min(23, itemBytes.length)])]), itemBytes]));
    case 5: {
      // change a container's count or a string's length by ±1
      const ib = b[s.start]!;
      if ((ib & 0x1f) >= 24) return undefined;
      const out = Buffer.from(b);
      out[s.start] = (ib & 0xe0) | ((ib & 0x1f) + (rng.chance(0.5) ? 1 : 23) % 24) % 24;
      return out;
    }
    case 6: // make a definite container indefinite (or the reverse: drop the break)
      if ((s.major === 4 || s.major === 5) && (b[s.start]! & 0x1f) < 24) {
        return Buffer.concat([b.subarray(0, s.start), Buffer.from([(s.major << 5) | 31]), b.subarray(s.headEnd, s.end), Buffer.from([0xff]), b.subarray(s.end)]);
      }
      return undefined;
    default: {
      // swap with the next item (map key order)
      const next = spans.find((x) => x.start === s.end);
      if (!next) return undefined;
      return Buffer.concat([b.subarray(0, s.start), b.subarray(next.start, next.end), itemBytes, b.subarray(next.end)]);
    }
  }
}

/** A havoc-stacked mutation of `input`, at most `maxLen` bytes. */
export function mutate(input: Buffer, c: MutationContext): Buffer {
  let b = input;
  const rounds = 1 << c.rng.below(5);
  for (let i = 0; i < rounds; i++) {
    const m = c.cbor && c.rng.chance(0.35) ? cborMutation(b, c) : undefined;
    b = m ?? byteMutation(b, c);
    if (b.length > c.maxLen) b = b.subarray(0, c.maxLen);
  }
  return Buffer.from(b);
}
