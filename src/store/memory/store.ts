/**
 * {@link Store} in memory: every record in JavaScript maps, nothing on disk. For tests and trials
 * (`idprov serve --store memory` is not offered: a server's tokens must outlive its process).
 *
 * Durability: none. A call's promise resolves once its mutations are applied to the maps; everything
 * is gone when the process ends or the store is closed. Nothing is shared between processes.
 *
 * Otherwise it keeps the Store contract as the SQL stores do (test/support/store-contract.ts runs against it):
 * each `apply` call is atomic (an undo log rolls a failing call back, alone, while the other calls of
 * its group commit); concurrent calls are grouped into one "transaction" per event-loop turn (group
 * commit, counted in {@link MemoryStore.stats}); records are checked against the rules the SQL schemas
 * enforce (`records.ts`) and copied in and out; lists page by id in JavaScript string order; an
 * `event` gets the next seq; `nonce.use` is ignored, as by SQLite (one process: the service's
 * used-once set is the whole truth). A bulk import's staging area is an array.
 */
import type {
  AdminTokenRecord,
  AllowEntry,
  DeviceRecord,
  EventRecord,
  FlagRecord,
  PendingRecord,
  PendingStatus,
  Revocation,
  SubjectRecords,
  TokenKeyRecord,
} from '../../domain.ts';
import { ProvError } from '../../errors.ts';
import { clampLimit, pageOf } from '../paging.ts';
import type { AllowStaging, BulkResult, ListOptions, Mutation, Page, PskEntry, Store, StoreTable } from '../store.ts';
import {
  checkAdminToken,
  checkAllow,
  checkDevice,
  checkEvent,
  checkFlag,
  checkKey,
  checkPending,
  checkRevocation,
  out,
} from './records.ts';
import { MemoryStaging, Table, type Undo } from './table.ts';

/** Most waiting requests one `pending.expire` deletes (as the SQL stores). */
const PRUNE_BATCH = 50_000;

/** Counters of a {@link MemoryStore} (as the SQL stores keep them). */
export interface MemoryStoreStats {
  /** Groups of calls applied (one "transaction" each). */
  transactions: number;
  /** Of those, the ones in which at least one call succeeded. */
  commits: number;
  calls: number;
  failedCalls: number;
  largestGroup: number;
}

interface QueuedCall {
  run: (undo: Undo) => void;
  resolve: () => void;
  reject: (e: ProvError) => void;
}

export class MemoryStore implements Store {
  readonly stats: MemoryStoreStats = { transactions: 0, commits: 0, calls: 0, failedCalls: 0, largestGroup: 0 };
  private readonly allow = new Table<AllowEntry>();
  private readonly devices = new Table<DeviceRecord>();
  private readonly pending = new Table<PendingRecord>();
  private readonly revocations = new Table<Revocation>();
  private readonly keys = new Table<TokenKeyRecord>();
  private readonly settings = new Table<{ name: string; value: string }>();
  private readonly flags = new Table<FlagRecord>();
  private readonly adminTokens = new Table<AdminTokenRecord>();
  /** In seq order. */
  private events: EventRecord[] = [];
  private nextSeq = 1;
  private queue: QueuedCall[] = [];
  private scheduled = false;
  private closed = false;

  /** A new, empty store. */
  static async open(): Promise<MemoryStore> {
    return new MemoryStore();
  }

  // -------------------------------------------------------------------------------------------
  // Writes

  /** Applies `mutations` atomically with the other calls of this event-loop turn; see the module comment. */
  apply(mutations: readonly Mutation[]): Promise<void> {
    if (this.closed) return Promise.reject(closedError());
    if (mutations.length === 0) return Promise.resolve();
    return this.enqueue((undo) => {
      for (const m of mutations) this.applyOne(m, undo);
    });
  }

  /** A staging area in memory (an array: the entries are held until the import is written). */
  async stageAllow(): Promise<AllowStaging> {
    if (this.closed) throw closedError();
    return new MemoryStaging();
  }

  /** Upserts every staged entry, then `after`, as one call: all or nothing. */
  bulkUpsertAllow(staged: AllowStaging, after: readonly Mutation[] = []): Promise<BulkResult> {
    if (this.closed) return Promise.reject(closedError());
    if (!(staged instanceof MemoryStaging)) return Promise.reject(new ProvError('internal', 'bulk import: the staging area was made by another store'));
    const result: BulkResult = { rows: 0, added: 0 };
    return this.enqueue((undo) => {
      const before = this.allow.size;
      for (const entry of staged.entries) this.applyOne({ kind: 'allow.upsert', entry }, undo);
      for (const m of after) this.applyOne(m, undo);
      result.rows = staged.entries.length;
      result.added = this.allow.size - before;
    }).then(() => result);
  }

  private enqueue(run: (undo: Undo) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ run, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Applies every queued call as one group; a failing call is undone alone. */
  private flush(): void {
    this.scheduled = false;
    const group = this.queue;
    this.queue = [];
    if (group.length === 0) return;
    this.stats.transactions++;
    this.stats.calls += group.length;
    this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
    let committed = false;
    for (const call of group) {
      const undo: Undo = [];
      try {
        call.run(undo);
        committed = true;
        call.resolve();
      } catch (e) {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
        this.stats.failedCalls++;
        call.reject(e instanceof ProvError ? e : new ProvError('internal', `store apply: ${(e as Error).message}`));
      }
    }
    if (committed) this.stats.commits++;
  }

  private applyOne(m: Mutation, undo: Undo): void {
    switch (m.kind) {
      case 'allow.upsert': {
        const e = checkAllow(m.entry);
        const old = this.allow.get(e.id);
        // An unchanged entry keeps its consumption (see Mutation 'allow.upsert').
        if (e.consumedAt === undefined && old?.consumedAt !== undefined && sameFactors(old, e)) e.consumedAt = old.consumedAt;
        this.allow.set(e.id, e, undo);
        return;
      }
      case 'allow.delete':
        this.allow.delete(m.id, undo);
        return;
      case 'allow.consume': {
        const e = this.allow.get(m.id);
        if (!e || e.consumedAt !== undefined) throw new ProvError('conflict', 'allowlist entry is missing or already consumed', { id: m.id });
        if (!Number.isSafeInteger(m.at)) throw new ProvError('internal', 'store apply: allow.consume: at is not an integer');
        this.allow.set(m.id, { ...e, consumedAt: m.at }, undo);
        return;
      }
      case 'device.upsert':
        this.devices.set(m.device.id, checkDevice(m.device), undo);
        return;
      case 'device.delete':
        this.devices.delete(m.id, undo);
        return;
      case 'pending.upsert':
        this.pending.set(m.pending.id, checkPending(m.pending), undo);
        return;
      case 'pending.delete':
        this.pending.delete(m.id, undo);
        return;
      case 'pending.seen': {
        const p = this.pending.get(m.id);
        if (p) this.pending.set(m.id, checkPending({ ...p, lastSeen: m.lastSeen, count: m.count, source: m.source }), undo);
        return;
      }
      case 'revocation.put':
        this.revocations.set(m.revocation.id, checkRevocation(m.revocation), undo);
        return;
      case 'revocation.delete':
        this.revocations.delete(m.id, undo);
        return;
      case 'key.put':
        this.keys.set(m.key.kid, checkKey(m.key), undo);
        return;
      case 'setting.put':
        if (typeof m.name !== 'string' || typeof m.value !== 'string') throw new ProvError('internal', 'store apply: a setting is a string');
        this.settings.set(m.name, { name: m.name, value: m.value }, undo);
        return;
      case 'event': {
        const e = checkEvent(m.event, this.nextSeq);
        this.nextSeq++;
        this.events.push(e);
        undo.push(() => {
          this.events.pop();
          this.nextSeq--;
        });
        return;
      }
      case 'event.copy': {
        const e = checkEvent(m.event, m.event.seq);
        if (!Number.isSafeInteger(e.seq) || e.seq! < 1) throw new ProvError('internal', 'store apply: event.copy: seq');
        const at = this.eventIndexAfter(e.seq! - 1);
        if (this.events[at]?.seq === e.seq) throw new ProvError('conflict', `store apply: event ${e.seq} exists`);
        const next = this.nextSeq;
        this.events.splice(at, 0, e);
        this.nextSeq = Math.max(next, e.seq! + 1);
        undo.push(() => {
          this.events.splice(at, 1);
          this.nextSeq = next;
        });
        return;
      }
      case 'flag.put': {
        const f = checkFlag(m.flag);
        if (f.clearedAt === undefined) {
          // One open flag per kind and subject (the SQL stores' unique index flags_open).
          for (const g of this.flags.values()) {
            if (g.id !== f.id && g.clearedAt === undefined && g.kind === f.kind && g.subject === f.subject) {
              throw new ProvError('conflict', 'store apply: an open flag of this kind and subject exists', { id: g.id });
            }
          }
        }
        this.flags.set(f.id, f, undo);
        return;
      }
      case 'flag.delete':
        this.flags.delete(m.id, undo);
        return;
      case 'flags.trim': {
        const excess = this.flags.size - m.max;
        if (excess <= 0) return;
        const cleared = [...this.flags.values()].filter((f) => f.clearedAt !== undefined);
        cleared.sort((a, b) => a.clearedAt! - b.clearedAt! || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        for (const f of cleared.slice(0, excess)) this.flags.delete(f.id, undo);
        return;
      }
      case 'admin-token.put':
        this.adminTokens.set(m.token.jti, checkAdminToken(m.token), undo);
        return;
      case 'admin-token.revoke': {
        const t = this.adminTokens.get(m.jti);
        if (!t || t.revokedAt !== null) return;
        this.adminTokens.set(m.jti, checkAdminToken({ ...t, revokedAt: m.at, revokedBy: m.by, revokedReason: m.reason }), undo);
        return;
      }
      case 'nonce.use':
      case 'nonces.prune':
        // One process: the service's in-memory used-once set is authoritative (see Mutation).
        return;
      case 'pending.trim': {
        const waiting = [...this.pending.values()].filter((p) => p.status === 'pending');
        const excess = waiting.length - m.max;
        if (excess <= 0) return;
        const victims = waiting.filter((p) => p.id !== m.keep).sort(byLastSeen).slice(0, excess);
        for (const p of victims) this.pending.delete(p.id, undo);
        if (m.removed) m.removed.count += victims.length;
        return;
      }
      case 'pending.expire': {
        const victims = [...this.pending.values()].filter((p) => p.status === 'pending' && p.lastSeen < m.before).sort(byLastSeen).slice(0, PRUNE_BATCH);
        for (const p of victims) this.pending.delete(p.id, undo);
        if (m.removed) m.removed.count += victims.length;
        return;
      }
      case 'events.prune': {
        // Old events are a prefix by seq: those before the first one at or after `before`, then the
        // oldest beyond the newest `max`; at most `limit` in all.
        let n = 0;
        while (n < m.limit && n < this.events.length && this.events[n]!.at < m.before) n++;
        n = Math.min(m.limit, Math.max(n, this.events.length - m.max));
        if (n <= 0) return;
        const removed = this.events.splice(0, n);
        undo.push(() => {
          this.events.unshift(...removed);
        });
        if (m.removed) m.removed.count += n;
        return;
      }
      default: {
        const unknown: never = m;
        throw new ProvError('internal', 'store apply: unknown mutation kind', { kind: String((unknown as { kind?: unknown }).kind) });
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  private check(): void {
    if (this.closed) throw closedError();
  }

  async loadSubject(id: string): Promise<SubjectRecords> {
    this.check();
    const r: SubjectRecords = {};
    const a = this.allow.get(id);
    const d = this.devices.get(id);
    const p = this.pending.get(id);
    const v = this.revocations.get(id);
    if (a) r.allow = out(a);
    if (d) r.device = out(d);
    if (p) r.pending = out(p);
    if (v) r.revocation = out(v);
    return r;
  }

  async getAllow(id: string): Promise<AllowEntry | undefined> {
    return this.one(this.allow, id);
  }

  async pskOf(id: string): Promise<{ secret?: string; expires?: number }> {
    this.check();
    const e = this.allow.get(id);
    const r: { secret?: string; expires?: number } = {};
    if (e?.secret !== undefined) r.secret = e.secret;
    if (e?.expires !== undefined) r.expires = e.expires;
    return r;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.one(this.devices, id);
  }

  async getPending(id: string): Promise<PendingRecord | undefined> {
    return this.one(this.pending, id);
  }

  async getRevocation(id: string): Promise<Revocation | undefined> {
    return this.one(this.revocations, id);
  }

  async getFlag(id: string): Promise<FlagRecord | undefined> {
    return this.one(this.flags, id);
  }

  async getAdminToken(jti: string): Promise<AdminTokenRecord | undefined> {
    return this.one(this.adminTokens, jti);
  }

  private one<T extends object>(t: Table<T>, key: string): T | undefined {
    this.check();
    const r = t.get(key);
    return r === undefined ? undefined : out(r);
  }

  private page<T extends object>(t: Table<T>, opts: ListOptions | undefined, key: (r: T) => string, keep?: (r: T) => boolean): Page<T> {
    this.check();
    const limit = clampLimit(opts?.limit);
    return pageOf(t.after(opts?.after ?? '', limit + 1, keep).map((r) => out(r)), limit, key);
  }

  async listAllow(opts?: ListOptions): Promise<Page<AllowEntry>> {
    return this.page(this.allow, opts, (r) => r.id);
  }

  async listPsk(opts?: ListOptions): Promise<Page<PskEntry>> {
    const limit = clampLimit(opts?.limit);
    const rows = this.allow.after(opts?.after ?? '', limit + 1, (e) => e.secret !== undefined);
    return pageOf(rows.map((e) => (e.expires === undefined ? { id: e.id, secret: e.secret! } : { id: e.id, secret: e.secret!, expires: e.expires })), limit, (r) => r.id);
  }

  async listDevices(opts?: ListOptions): Promise<Page<DeviceRecord>> {
    return this.page(this.devices, opts, (r) => r.id);
  }

  async listPending(opts?: ListOptions & { status?: PendingStatus }): Promise<Page<PendingRecord>> {
    const status = opts?.status;
    return this.page(this.pending, opts, (r) => r.id, status === undefined ? undefined : (r) => r.status === status);
  }

  async listRevocations(opts?: ListOptions): Promise<Page<Revocation>> {
    return this.page(this.revocations, opts, (r) => r.id);
  }

  async listFlags(opts?: ListOptions & { status?: 'open' | 'cleared' }): Promise<Page<FlagRecord>> {
    const status = opts?.status;
    const keep = status === undefined ? undefined : (f: FlagRecord) => (f.clearedAt === undefined) === (status === 'open');
    return this.page(this.flags, opts, (r) => r.id, keep);
  }

  async listAdminTokens(opts: { after?: string | undefined; limit: number }): Promise<Page<AdminTokenRecord>> {
    return this.page(this.adminTokens, opts, (r) => r.jti);
  }

  async listKeys(): Promise<TokenKeyRecord[]> {
    this.check();
    return [...this.keys.values()].sort((a, b) => b.createdAt - a.createdAt || (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0)).map((k) => out(k));
  }

  async getSetting(name: string): Promise<string | undefined> {
    this.check();
    return this.settings.get(name)?.value;
  }

  async listSettings(): Promise<Array<{ name: string; value: string }>> {
    this.check();
    return this.settings.after('', Number.POSITIVE_INFINITY).map((r) => ({ ...r }));
  }

  async macPeers(mac: Uint8Array, exceptId: string, limit: number): Promise<string[]> {
    this.check();
    const n = clampLimit(limit);
    const same = (m: Uint8Array | undefined) => m !== undefined && Buffer.from(m).equals(Buffer.from(mac));
    const ids = new Set<string>();
    for (const t of [this.devices, this.pending] as Array<Table<{ id: string; mac?: Uint8Array }>>) {
      for (const r of t.values()) if (r.id !== exceptId && same(r.mac)) ids.add(r.id);
    }
    return [...ids].slice(0, n);
  }

  async pendingWaiting(): Promise<number> {
    this.check();
    let n = 0;
    for (const p of this.pending.values()) if (p.status === 'pending') n++;
    return n;
  }

  async listEvents(afterSeq: number, limit: number): Promise<EventRecord[]> {
    this.check();
    const lo = this.eventIndexAfter(Number.isFinite(afterSeq) ? Math.trunc(afterSeq) : 0);
    return this.events.slice(lo, lo + clampLimit(limit)).map((e) => out(e));
  }

  /** Index of the first event with seq > `after`. */
  private eventIndexAfter(after: number): number {
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.events[mid]!.seq! <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  async counts(): Promise<Record<StoreTable, number>> {
    this.check();
    return {
      allowlist: this.allow.size,
      devices: this.devices.size,
      pending: this.pending.size,
      revocations: this.revocations.size,
      keys: this.keys.size,
      events: this.events.length,
      flags: this.flags.size,
      adminTokens: this.adminTokens.size,
    };
  }

  /** Applies every call already made, then rejects later ones with `internal`. Idempotent. */
  async close(): Promise<void> {
    if (this.queue.length > 0) this.flush();
    this.closed = true;
  }
}

function sameFactors(a: AllowEntry, b: AllowEntry): boolean {
  const eq = (x: Uint8Array | undefined, y: Uint8Array | undefined) => (x === undefined ? y === undefined : y !== undefined && Buffer.from(x).equals(Buffer.from(y)));
  return eq(a.pk, b.pk) && eq(a.mac, b.mac) && a.secret === b.secret;
}

function byLastSeen(a: PendingRecord, b: PendingRecord): number {
  return a.lastSeen - b.lastSeen || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function closedError(): ProvError {
  return new ProvError('internal', 'the MemoryStore is closed');
}
