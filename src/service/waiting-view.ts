/**
 * The waiting requests whose device has nothing else on record, kept in memory so that a repeat poll
 * needs no store read (issue 17: the read, a thread-pool round trip to SQLite, was a fifth of a
 * poll's CPU with 100,000 devices waiting).
 *
 * An entry is the subject of its ID as the store last showed it to this process — a waiting request
 * (status `pending`) and no allowlist entry, device or revocation — updated by this process's own
 * polls. Every commit this process makes that may change such a subject drops its entry (all of
 * them for deletes it cannot attribute: a trim or expiry that removed rows), and any change made
 * elsewhere (another instance on a shared database, another process on the SQLite file, a bulk
 * import) to a subject table, sightings included, drops them all — so on a database shared by
 * several instances an entry lasts only until another instance writes, and the view saves little
 * there. A read that started before such a drop does not
 * refill the view (the generation check), so an entry never holds a state older than a commit this
 * process has seen.
 *
 * What a change made elsewhere may meet before its notification arrives is an entry one change old.
 * The service uses an entry only for a poll that entry answers with "still pending" (a repeat of the
 * same key, type and no MAC): such an answer carries nothing an approval, rejection, revocation or
 * allowlist entry would withhold, so the late notification can only delay them by one poll, never
 * issue a token the store would refuse.
 */
import type { PendingRecord, SubjectRecords } from '../domain.ts';
import type { Mutation } from '../store/store.ts';
import type { ChangeListener } from './changes.ts';

/** Mutation kinds that may change a subject (allowlist, device, waiting request, revocation). */
const SUBJECT_KINDS: ReadonlySet<Mutation['kind']> = new Set<Mutation['kind']>([
  'allow.upsert',
  'allow.delete',
  'allow.consume',
  'device.upsert',
  'device.delete',
  'pending.upsert',
  'pending.delete',
  'pending.trim',
  'pending.expire',
  'revocation.put',
  'revocation.delete',
]);

/** True when `rec` is a waiting request and nothing else. */
export function isWaitingOnly(rec: SubjectRecords): rec is { pending: PendingRecord } {
  return rec.pending !== undefined && rec.pending.status === 'pending' && !rec.allow && !rec.device && !rec.revocation;
}

export class WaitingView {
  private entries = new Map<string, PendingRecord>();
  private generation = 0;

  /** @param max entries at most (the cap of waiting requests: bounded as the table is). */
  constructor(readonly max: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** Pass to {@link learn} for a store read that starts now. */
  get epoch(): number {
    return this.generation;
  }

  /** The subject of `id` when the view holds it (a waiting request and nothing else). */
  subject(id: string): { pending: PendingRecord } | undefined {
    const p = this.entries.get(id);
    return p ? { pending: p } : undefined;
  }

  /** What a store read started at `epoch` showed for `id`: kept when nothing was dropped since. */
  learn(id: string, rec: SubjectRecords, epoch: number): void {
    if (epoch !== this.generation) return;
    if (!isWaitingOnly(rec)) {
      this.entries.delete(id);
      return;
    }
    if (!this.entries.has(id) && this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, rec.pending);
  }

  /**
   * Add `records` (waiting requests of IDs with nothing else on record, read by scans that started at
   * `epoch`) where the view holds nothing newer, while there is room. Nothing when a drop happened
   * since `epoch`. Returns how many were added.
   */
  fill(records: Iterable<PendingRecord>, epoch: number): number {
    if (epoch !== this.generation) return 0;
    let added = 0;
    for (const p of records) {
      if (this.entries.size >= this.max) break;
      if (this.entries.has(p.id) || p.status !== 'pending') continue;
      this.entries.set(p.id, p);
      added++;
    }
    return added;
  }

  /** A repeat poll of a waiting request was answered: `p` is its newest state (not yet written). */
  noted(p: PendingRecord): void {
    if (this.entries.has(p.id)) this.entries.set(p.id, p);
  }

  /** Forget everything (and let no read in flight refill it). */
  clear(): void {
    this.generation++;
    this.entries.clear();
  }

  private drop(id: string): void {
    this.generation++;
    this.entries.delete(id);
  }

  /** Subscribe to the store's change notification (ObservedStore.subscribe). */
  readonly onChange: ChangeListener = (muts, _version, foreign) => {
    if (foreign) {
      // Another instance's sightings too: its counts would otherwise be written over by older ones.
      for (const k of foreign) {
        if (SUBJECT_KINDS.has(k) || k === 'pending.seen') return this.clear();
      }
    }
    for (const m of muts) {
      switch (m.kind) {
        case 'allow.upsert':
          this.drop(m.entry.id);
          break;
        case 'device.upsert':
          this.drop(m.device.id);
          break;
        case 'pending.upsert':
          this.drop(m.pending.id);
          break;
        case 'revocation.put':
          this.drop(m.revocation.id);
          break;
        case 'allow.delete':
        case 'allow.consume':
        case 'device.delete':
        case 'pending.delete':
        case 'revocation.delete':
          this.drop(m.id);
          break;
        case 'pending.trim':
        case 'pending.expire':
          // Which rows went is not told; that none did is (when the caller asked).
          if (m.removed === undefined || m.removed.count > 0) this.clear();
          break;
        default:
          // pending.seen is this process's own sightings, already in the entries; the rest is no subject.
          break;
      }
    }
  };
}
