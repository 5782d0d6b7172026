/**
 * Keyset pagination as every Store implementation does it ({@link Page}, {@link ListOptions}): items
 * in key order after `after`, at most `limit` (default {@link DEFAULT_PAGE}, clamped to
 * 1..{@link MAX_PAGE}); `next` is the last item's key, present only while more remain. A store reads
 * one row more than the page holds to know whether more remain.
 */
import type { Page } from './store.ts';

/** Largest page a list returns. */
export const MAX_PAGE = 1000;
/** Page size when `limit` is absent. */
export const DEFAULT_PAGE = 100;

/** `limit` as a page size: an integer in 1..{@link MAX_PAGE}, {@link DEFAULT_PAGE} when absent or not finite. */
export function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE;
  return Math.min(MAX_PAGE, Math.max(1, Math.trunc(limit)));
}

/** The page of `rows` (up to `limit + 1` of them, in key order): `next` is set when there were more. */
export function pageOf<T>(rows: readonly T[], limit: number, key: (item: T) => string): Page<T> {
  const items = rows.slice(0, limit);
  return rows.length > limit ? { items, next: key(items[items.length - 1]!) } : { items };
}

/** Every page of a keyset-paged list, in order: `list(after)` from the start until a page has no `next`. */
export async function* allPages<T>(list: (after: string | undefined) => Promise<Page<T>>): AsyncGenerator<T[]> {
  let after: string | undefined;
  do {
    const page = await list(after);
    if (page.items.length > 0) yield page.items;
    after = page.next;
  } while (after !== undefined);
}
