/**
 * The in-memory store's containers: a table of records by key (with an undo log, so a failing call
 * is rolled back, and its keys sorted on demand for keyset pagination) and a bulk import's staging
 * area.
 */
import type { AllowEntry } from '../../domain.ts';
import type { AllowStaging } from '../store.ts';

/** Closures that undo one call's changes, run last to first. */
export type Undo = Array<() => void>;

/** A map of records by key, with its keys sorted on demand for keyset pagination. */
export class Table<T> {
  private readonly rows = new Map<string, T>();
  private sorted: string[] | undefined;

  get size(): number {
    return this.rows.size;
  }

  get(key: string): T | undefined {
    return this.rows.get(key);
  }

  values(): IterableIterator<T> {
    return this.rows.values();
  }

  set(key: string, value: T, undo: Undo): void {
    const had = this.rows.has(key);
    const old = this.rows.get(key);
    this.rows.set(key, value);
    if (!had) this.sorted = undefined;
    undo.push(() => {
      if (had) this.rows.set(key, old as T);
      else {
        this.rows.delete(key);
        this.sorted = undefined;
      }
    });
  }

  delete(key: string, undo: Undo): boolean {
    if (!this.rows.has(key)) return false;
    const old = this.rows.get(key) as T;
    this.rows.delete(key);
    this.sorted = undefined;
    undo.push(() => {
      this.rows.set(key, old);
      this.sorted = undefined;
    });
    return true;
  }

  /** Records with key > `after` in key order, those `keep` accepts, at most `n`. */
  after(after: string, n: number, keep: (v: T) => boolean = () => true): T[] {
    this.sorted ??= [...this.rows.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const keys = this.sorted;
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    const found: T[] = [];
    for (let i = lo; i < keys.length && found.length < n; i++) {
      const v = this.rows.get(keys[i]!)!;
      if (keep(v)) found.push(v);
    }
    return found;
  }
}

/** A bulk import's staging area of a {@link MemoryStore}: the entries, in order. */
export class MemoryStaging implements AllowStaging {
  entries: AllowEntry[] = [];

  get count(): number {
    return this.entries.length;
  }

  async write(entries: readonly AllowEntry[]): Promise<void> {
    for (const e of entries) this.entries.push(e);
  }

  async discard(): Promise<void> {
    this.entries = [];
  }
}
