/** Latency summaries and a least-squares slope, for the benchmark's reports. */

export interface Latency {
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  samples: number;
}

/** Percentile (nearest rank) of an ascending array. */
function rank(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

/** Summarise `n` latency samples (ms) held in `xs[0..n)`. */
export function summarize(xs: Float64Array, n = xs.length): Latency {
  const s = xs.slice(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  const r3 = (v: number): number => Math.round(v * 1000) / 1000;
  return {
    p50: r3(rank(s, 0.5)),
    p90: r3(rank(s, 0.9)),
    p99: r3(rank(s, 0.99)),
    max: r3(n > 0 ? s[n - 1]! : NaN),
    mean: r3(n > 0 ? sum / n : NaN),
    samples: n,
  };
}

/** Least-squares slope of y against x (units of y per unit of x); NaN with fewer than two points. */
export function slope(x: readonly number[], y: readonly number[]): number {
  const n = Math.min(x.length, y.length);
  if (n < 2) return NaN;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += x[i]!;
    sy += y[i]!;
  }
  const mx = sx / n;
  const my = sy / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (x[i]! - mx) * (y[i]! - my);
    den += (x[i]! - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}
