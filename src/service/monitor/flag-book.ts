/**
 * The open flags of the security monitor (issue #6), kept in memory for the hot path (merging
 * repeated observations, the hold-flagged check) and written through the Store as mutations in the
 * same transaction as the decision that raised them. The database stays the record: the book is
 * loaded from it at start, and an admin's clear goes to both.
 *
 * Clearing acknowledges: the book remembers the last flag an admin cleared per kind and subject (for
 * the state kinds, see {@link acknowledges}) so that the same observation does not raise it again.
 *
 * Bounded: at most `maxFlags` open flags and `maxFlags` acknowledgements. A new flag beyond that closes the least recently seen one
 * (cleared by `system:cap`), and the `flags.trim` mutation drops the oldest cleared flags so the table
 * never holds more than `maxFlags` rows.
 */
import type { EventRecord, FlagRecord } from '../../domain.ts';
import type { FlagNote } from '../../policy/decide.ts';
import { MAX_FLAG_RAISERS, STATE_KINDS, acknowledges, type OpenFlagRef } from '../../policy/monitor/flag-rules.ts';
import type { LRUCache } from 'lru-cache';
import { boundedLru } from '../../bounded-lru.ts';
import type { Mutation, Store } from '../../store/store.ts';

/** Most device IDs one flag lists. */
export const MAX_FLAG_DEVICES = 32;

/** The actor that closes a flag to make room under the cap. */
export const CAP_ACTOR = 'system:cap';

const keyOf = (kind: string, subject: string): string => `${kind}\n${subject}`;

/** The evidence field that lists who raised a flag (space-separated `<id>@<fingerprint>`). */
export const RAISED_BY = 'raisedBy';

/**
 * The evidence of the latest observation, with the raisers of the earlier ones and `raiser` added. A
 * flag whose earlier raisers are not known (recorded by an older version) stays without the list, so
 * that it keeps holding as it did.
 */
function withRaiser(latest: Readonly<Record<string, string>>, prev: Readonly<Record<string, string>> | undefined, raiser: string | undefined): Record<string, string> {
  const out: Record<string, string> = { ...latest };
  delete out[RAISED_BY];
  const had = prev?.[RAISED_BY];
  if (prev !== undefined && had === undefined) return out;
  const list = had ? had.split(' ').filter(Boolean) : [];
  if (raiser !== undefined && !list.includes(raiser) && list.length < MAX_FLAG_RAISERS) list.push(raiser);
  if (list.length) out[RAISED_BY] = list.join(' ');
  return out;
}

export class FlagBook {
  /**
   * kind + subject → open flag, least recently seen first (re-inserted on every observation). A Map,
   * not the project's bounded LRU (src/bounded-lru.ts): dropping a flag here is a decision that is
   * recorded — it closes the flag in the database (a `flag.put` by `system:cap` in the same
   * transaction as the observation that needed the room) and leaves the device index — so `raise`
   * makes room itself before the insert, where the mutation can be returned.
   */
  private readonly open = new Map<string, FlagRecord>();
  private readonly keyById = new Map<string, string>();
  private readonly idsByDevice = new Map<string, Set<string>>();
  /** kind + subject → the flag an admin cleared last (state kinds only); the oldest clear goes first. */
  private readonly acked: LRUCache<string, FlagRecord>;
  /** Open flags closed to make room since start (metrics, tests). */
  evicted = 0;

  constructor(
    readonly maxFlags: number,
    private readonly random: (n: number) => Buffer,
  ) {
    this.acked = boundedLru<string, FlagRecord>(maxFlags);
  }

  /** Open flags held now (never more than `maxFlags`). */
  get size(): number {
    return this.open.size;
  }

  /** Load the open flags from the store (at start). */
  async load(store: Store): Promise<void> {
    const all: FlagRecord[] = [];
    let after: string | undefined;
    do {
      const page = await store.listFlags({ status: 'open', limit: 1000, ...(after ? { after } : {}) });
      all.push(...page.items);
      after = page.next;
    } while (after);
    all.sort((a, b) => a.lastSeen - b.lastSeen);
    for (const f of all.slice(-this.maxFlags)) this.insert(f);
    const cleared: FlagRecord[] = [];
    after = undefined;
    do {
      const page = await store.listFlags({ status: 'cleared', limit: 1000, ...(after ? { after } : {}) });
      cleared.push(...page.items);
      after = page.next;
    } while (after);
    cleared.sort((a, b) => (a.clearedAt ?? 0) - (b.clearedAt ?? 0));
    for (const f of cleared) this.acknowledge(f);
  }

  /** Remember a flag an admin cleared (state kinds only; never one closed by the cap). */
  private acknowledge(f: FlagRecord): void {
    if (f.clearedBy === CAP_ACTOR || !STATE_KINDS.has(f.kind as OpenFlagRef['kind'])) return;
    this.acked.set(keyOf(f.kind, f.subject), f);
  }

  private index(f: FlagRecord): void {
    for (const d of f.deviceIds) {
      let s = this.idsByDevice.get(d);
      if (!s) this.idsByDevice.set(d, (s = new Set()));
      s.add(f.id);
    }
  }

  private unindex(f: FlagRecord): void {
    for (const d of f.deviceIds) {
      const s = this.idsByDevice.get(d);
      if (!s) continue;
      s.delete(f.id);
      if (s.size === 0) this.idsByDevice.delete(d);
    }
  }

  private insert(f: FlagRecord): void {
    const k = keyOf(f.kind, f.subject);
    this.open.set(k, f);
    this.keyById.set(f.id, k);
    this.index(f);
  }

  private remove(f: FlagRecord): void {
    const k = keyOf(f.kind, f.subject);
    this.open.delete(k);
    this.keyById.delete(f.id);
    this.unindex(f);
  }

  /**
   * Merge observations into the open flags. Returns the mutations that record them (a `flag.put` per
   * flag touched, a `flag.raised` event per new flag, the cap's bookkeeping) and the new flags.
   * `raiser` ({@link import('../../policy/monitor/flag-rules.ts').raiserOf}) is who observed them: it is added to
   * each flag's evidence `raisedBy` (the first {@link MAX_FLAG_RAISERS} kept), which decides whom the
   * flag may hold.
   */
  raise(notes: readonly FlagNote[], now: number, raiser?: string): { muts: Mutation[]; raised: FlagRecord[] } {
    const muts: Mutation[] = [];
    const raised: FlagRecord[] = [];
    for (const n of notes) {
      const subject = n.subject ?? n.deviceId;
      const k = keyOf(n.kind, subject);
      const prev = this.open.get(k);
      const ack = prev ? undefined : this.acked.peek(k);
      if (ack && acknowledges(ack, n)) continue;
      if (prev) {
        const ids = [...prev.deviceIds];
        for (const d of [n.deviceId, ...(n.others ?? [])]) if (!ids.includes(d) && ids.length < MAX_FLAG_DEVICES) ids.push(d);
        const next: FlagRecord = { ...prev, deviceIds: ids, evidence: withRaiser(n.evidence, prev.evidence, raiser), lastSeen: Math.max(prev.lastSeen, now), count: prev.count + 1 };
        this.remove(prev);
        this.insert(next);
        muts.push({ kind: 'flag.put', flag: next });
        continue;
      }
      if (this.open.size >= this.maxFlags) {
        const oldest = this.open.values().next().value;
        if (oldest) {
          this.remove(oldest);
          this.evicted++;
          muts.push({ kind: 'flag.put', flag: { ...oldest, clearedAt: now, clearedBy: CAP_ACTOR } });
        }
      }
      const ids = [n.deviceId, ...(n.others ?? []).filter((d) => d !== n.deviceId)].slice(0, MAX_FLAG_DEVICES);
      const flag: FlagRecord = {
        id: this.random(8).toString('hex'),
        kind: n.kind,
        subject,
        deviceIds: ids,
        evidence: withRaiser(n.evidence, undefined, raiser),
        firstSeen: now,
        lastSeen: now,
        count: 1,
      };
      this.insert(flag);
      raised.push(flag);
      const event: EventRecord = {
        at: now,
        kind: 'flag.raised',
        deviceId: n.deviceId,
        actor: 'system',
        detail: { flag: flag.id, kind: flag.kind, deviceIds: flag.deviceIds, evidence: flag.evidence },
      };
      if (n.evidence['source']) event.source = n.evidence['source'];
      muts.push({ kind: 'flag.put', flag }, { kind: 'event', event });
    }
    if (raised.length) muts.push({ kind: 'flags.trim', max: this.maxFlags });
    return { muts, raised };
  }

  /** The open flags that name `deviceId` (the hold-flagged input). */
  openFor(deviceId: string): OpenFlagRef[] {
    const ids = this.idsByDevice.get(deviceId);
    if (!ids) return [];
    const out: OpenFlagRef[] = [];
    for (const id of ids) {
      const f = this.open.get(this.keyById.get(id)!);
      if (!f) continue;
      const ref: OpenFlagRef = { id: f.id, kind: f.kind as OpenFlagRef['kind'], deviceIds: f.deviceIds };
      const by = f.evidence[RAISED_BY];
      if (by !== undefined) ref.raisedBy = by.split(' ').filter(Boolean);
      out.push(ref);
    }
    return out;
  }

  /** Forget the open flag `id` (an admin is clearing it); returns its current state, if held. */
  take(id: string): FlagRecord | undefined {
    const k = this.keyById.get(id);
    const f = k === undefined ? undefined : this.open.get(k);
    if (f) this.remove(f);
    return f;
  }

  /** An admin cleared `f`: the same observation no longer raises it (state kinds). */
  cleared(f: FlagRecord): void {
    this.acknowledge(f);
  }
}
