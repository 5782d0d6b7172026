/** Seeded randomness and byte mutations for robustness and fuzz tests. */

/** Deterministic PRNG (mulberry32) for mutation tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Apply 1..3 random byte mutations (flip, replace, insert, delete) to a copy of `b`. */
export function mutate(b: Uint8Array, rnd: () => number): Buffer {
  const out = [...b];
  const n = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rnd() * Math.max(out.length, 1));
    const op = Math.floor(rnd() * 4);
    if (op === 0 && out.length) out[pos] = out[pos]! ^ (1 << Math.floor(rnd() * 8));
    else if (op === 1 && out.length) out[pos] = Math.floor(rnd() * 256);
    else if (op === 2) out.splice(pos, 0, Math.floor(rnd() * 256));
    else if (out.length) out.splice(pos, 1);
  }
  return Buffer.from(out);
}
