/**
 * When and from where waiting devices were last seen, kept in memory between flushes (issue 17).
 *
 * A repeat poll of a waiting request (same key, type and MAC) changes nothing durable but its
 * `lastSeen`, `count` and `source`. Those used to cost a write transaction (and an fsync) per poll;
 * now the service notes them here and writes them in one `pending.seen` batch per flush (every few
 * seconds from the composition root, before each sweep, at close, and at once when this table is
 * full). Nothing that matters waits for a flush: approvals, rejections, revocations, devices and new
 * waiting requests are written before their answer as before. What a kill -9 may lose is the
 * sightings since the last flush: the stored count lags, so the device's next retry hints are a
 * few steps shorter than they would have been (the back-off is advice to the device, not a
 * security bound; the rate limits and the nonce gate are in memory anyway), and an admin's view
 * shows it last seen a few seconds earlier (docs/architecture.md "Durability").
 */
import { withChanges, type PendingRecord } from '../domain.ts';
import type { Mutation } from '../store/store.ts';

interface Sighting {
  /** The `firstSeen` of the record this sighting belongs to (a re-created request is another record). */
  firstSeen: number;
  lastSeen: number;
  count: number;
  source: string;
}

export class PendingSightings {
  private seen = new Map<string, Sighting>();

  /** @param max entries kept before the owner should flush (bounded memory under 100k waiting devices). */
  constructor(readonly max: number) {}

  get size(): number {
    return this.seen.size;
  }

  /** `p` with the sighting noted since the last flush, when it is newer than what the store holds. */
  overlay(p: PendingRecord | undefined): PendingRecord | undefined {
    if (!p) return p;
    const s = this.seen.get(p.id);
    if (!s || s.firstSeen !== p.firstSeen || s.count <= p.count) return p;
    return withChanges(p, { lastSeen: s.lastSeen, count: s.count, source: s.source });
  }

  /** Note a repeat poll of the waiting request `p` (already overlaid and counted). True when full. */
  note(p: PendingRecord): boolean {
    this.seen.set(p.id, { firstSeen: p.firstSeen, lastSeen: p.lastSeen, count: p.count, source: p.source });
    return this.seen.size >= this.max;
  }

  /** Forget `id` (its request is written whole or deleted: a later flush must not touch a newer record). */
  forget(id: string): void {
    this.seen.delete(id);
  }

  /** Take every sighting as `pending.seen` mutations (no-ops for requests gone meanwhile). */
  drain(): { muts: Mutation[]; restore: () => void } {
    const taken = this.seen;
    this.seen = new Map();
    const muts: Mutation[] = [];
    for (const [id, s] of taken) muts.push({ kind: 'pending.seen', id, lastSeen: s.lastSeen, count: s.count, source: s.source });
    return {
      muts,
      // After a failed write: put back what no newer poll replaced.
      restore: () => {
        for (const [id, s] of taken) {
          const now = this.seen.get(id);
          if (!now || (now.firstSeen === s.firstSeen && now.count < s.count)) this.seen.set(id, s);
        }
      },
    };
  }
}
