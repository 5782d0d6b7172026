/** Comparing decoded values in oracles: bytes as hex, maps as sorted entries, bigints tagged. */
import { asTag } from '../../../src/protocol/cbor.ts';

/** A canonical JSON-able image of a decoded value. */
export function image(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (typeof v === 'bigint') return { big: v.toString() };
  if (Array.isArray(v)) return v.map(image);
  if (v instanceof Map) return { map: [...v].map(([k, x]) => [image(k), image(x)]).sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)) };
  const t = asTag(v);
  if (t) return { tag: t.tag, value: image(t.value) };
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, image(x)]).sort());
  return v;
}

/** True when `a` and `b` decode to the same thing. */
export function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(image(a)) === JSON.stringify(image(b));
}
