/** Output helpers of `oob`: aligned text tables, a progress bar for stderr, one-line events. */
import type { EventView } from '../../src/admin/views.ts';

/** A column of {@link table}: header and how to get the cell text from a row. */
export interface Column<T> {
  header: string;
  get: (row: T) => unknown;
}

function cellText(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v).replace(/[\r\n\t]+/g, ' ');
}

/** An aligned plain-text table (header, then one line per row), no trailing spaces. */
export function table<T>(rows: readonly T[], cols: ReadonlyArray<Column<T>>): string {
  const cells = rows.map((r) => cols.map((c) => cellText(c.get(r))));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.header.toUpperCase())), ...cells.map(line)].join('\n');
}

/** `2026-11-26T14:24:56.000Z` → `2026-11-26 14:24:56Z` (short, sortable, unambiguous). */
export function shortTime(iso: unknown): string | undefined {
  if (typeof iso !== 'string' || !iso) return undefined;
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** `1 row`, `2 rows`, `0 rows`: a count and its noun, singular only for exactly one. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Detail keys of events that hold a time in seconds since the epoch (`exp` of an issued token). */
const EPOCH_KEYS = new Set(['exp', 'iat', 'nbf', 'at', 'until', 'expires', 'seenAt', 'startedAt']);

/** Seconds since the epoch as `2026-11-26 14:24:56Z` (the form {@link shortTime} gives ISO strings). */
export function epochTime(s: number): string {
  return shortTime(new Date(s * 1000).toISOString())!;
}

/** 1536 → `1.5 KiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

/** The subset of a writable stream the progress bar needs. */
export interface ProgressOut {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * A progress bar on stderr. On a terminal it redraws one line (at most every 100 ms, and always at
 * 100 %); elsewhere (a pipe, a CI log) it prints a line at start and one at every quarter, so logs
 * stay short.
 */
export class ProgressBar {
  private lastDraw = Number.NEGATIVE_INFINITY;
  private lastQuarter = -1;
  private drawn = false;
  private finished = false;

  constructor(
    private readonly out: ProgressOut,
    private readonly label: string,
    private readonly total: number,
    private readonly clock: () => number = Date.now,
  ) {}

  update(done: number): void {
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const pct = Math.floor(frac * 100);
    if (this.out.isTTY) {
      const now = this.clock();
      if (frac < 1 && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - this.label.length - 30));
      const full = Math.round(frac * width);
      this.out.write(`\r${this.label} [${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(pct).padStart(3)}% ${bytes(done)}/${bytes(this.total)}\x1b[K`);
      this.drawn = true;
    } else {
      const quarter = Math.floor(frac * 4);
      if (quarter === this.lastQuarter) return;
      this.lastQuarter = quarter;
      this.out.write(`${this.label} ${String(pct).padStart(3)}% (${bytes(done)} of ${bytes(this.total)})\n`);
    }
  }

  /** End the bar's line (terminal) so the next output starts on a fresh line. */
  finish(note?: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.out.isTTY && this.drawn) this.out.write(note ? ` ${note}\n` : '\n');
    else if (note) this.out.write(`${this.label} ${note}\n`);
  }
}

/** An event of the feed, as the sidecar sends it (src/admin/views.ts). */
export type { EventView };

/**
 * One line per event: `#12 2026-11-26 14:24:56Z admin.approve stranger-9 by admin:alice from 127.0.0.1 fingerprint=…`.
 * Times in the detail (`exp` of an issued token) are printed as UTC times, not epoch seconds.
 */
export function eventLine(e: EventView): string {
  const parts = [`#${e.seq}`, shortTime(e.at) ?? e.at, e.kind];
  if (e.deviceId) parts.push(e.deviceId);
  parts.push(`by ${e.actor}`);
  if (e.source) parts.push(`from ${e.source}`);
  for (const [k, v] of Object.entries(e.detail ?? {})) {
    if (EPOCH_KEYS.has(k) && typeof v === 'number' && Number.isFinite(v) && v > 0) parts.push(`${k}=${epochTime(v).replace(' ', 'T')}`);
    else parts.push(`${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`);
  }
  return parts.join(' ');
}
