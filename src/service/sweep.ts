/**
 * The maintenance sweep (bounded growth, issue #6): what the composition root runs at start and every
 * minute. One transaction of deleting mutations; the store does the work.
 */
import type { Logger } from '../log.ts';
import type { Store } from '../store/store.ts';
import type { MonitorSettings } from './monitor/security-monitor.ts';

/** What one maintenance sweep removed. */
export interface SweepResult {
  /** Waiting requests not seen for `pendingExpiry`. */
  pendingExpired: number;
  /** Waiting requests beyond `maxPending`. */
  pendingTrimmed: number;
  /** Events past `eventRetention` or beyond `maxEvents`. */
  eventsPruned: number;
}

/**
 * Delete waiting requests not seen for `pendingExpiry` and those beyond `maxPending` (least recently
 * seen first), events past `eventRetention` or beyond `maxEvents`, cleared flags beyond `maxFlags`,
 * expired used-once nonces. One transaction; a `system.sweep` event records what went when anything did.
 */
export async function sweep(store: Store, log: Logger, now: number, m: Readonly<MonitorSettings>): Promise<SweepResult> {
  const expired = { count: 0 };
  const trimmed = { count: 0 };
  const pruned = { count: 0 };
  await store.apply([
    { kind: 'pending.expire', before: now - m.pendingExpiryS, removed: expired },
    { kind: 'pending.trim', max: m.maxPending, removed: trimmed },
    { kind: 'events.prune', before: now - m.eventRetentionS, max: m.maxEvents, limit: 100_000, removed: pruned },
    { kind: 'flags.trim', max: m.maxFlags },
    { kind: 'nonces.prune', before: now },
  ]);
  const r: SweepResult = { pendingExpired: expired.count, pendingTrimmed: trimmed.count, eventsPruned: pruned.count };
  if (r.pendingExpired || r.pendingTrimmed || r.eventsPruned) {
    log.info({ evt: 'sweep', ...r }, 'removed stale records');
    await store.apply([{ kind: 'event', event: { at: now, kind: 'system.sweep', actor: 'system', detail: { ...r } } }]);
  }
  return r;
}
