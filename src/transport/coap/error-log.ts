/** The engine's error log, limited so that hostile traffic cannot flood it. */
import type { Logger } from '../../log.ts';

/** Error lines per second before the rest of that second are counted instead of written. */
const LINES_PER_SECOND = 20;

/**
 * An error logger writing at most 20 lines per second (a one-second window on `now`); at the start of
 * the next window, a warning says how many lines the last one suppressed.
 */
export function throttledErrorLog(log: Logger, now: () => number): (obj: Record<string, unknown>, msg: string) => void {
  let windowStart = 0;
  let count = 0;
  let suppressed = 0;
  return (obj, msg) => {
    const t = now();
    if (t - windowStart >= 1000) {
      if (suppressed > 0) log.warn({ suppressed }, 'coap: error lines suppressed');
      windowStart = t;
      count = 0;
      suppressed = 0;
    }
    if (count++ < LINES_PER_SECOND) log.error(obj, msg);
    else suppressed++;
  };
}
