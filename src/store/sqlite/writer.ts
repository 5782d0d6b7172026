/**
 * The SQLite store's writer: one connection owns every write transaction. {@link SqliteWriter.apply}
 * queues the call; one flush at a time runs every queued call in a single `BEGIN IMMEDIATE … COMMIT`
 * (group commit) — or, for a group of the common provisioning mutations, as one statement (see
 * `batch.ts`). A call whose mutation fails is rolled back and rejected alone while the others commit
 * (statement atomicity, or a SAVEPOINT per call when a call fails half-way; see `runTransaction`). A
 * call's promise settles only after the COMMIT (or ROLLBACK) of its group has returned. A bulk
 * allowlist import runs alone in its own transaction.
 */
import type { Database, RunResult } from 'sqlite3';
import { ProvError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import {
  adminTokenParams,
  allowParams,
  allowRow,
  deviceParams,
  eventCopyParams,
  eventParams,
  flagParams,
  keyParams,
  pendingParams,
  revocationParams,
} from '../rows.ts';
import type { BulkResult, Mutation } from '../store.ts';
import { batchOf } from './batch.ts';
import type { CheckpointStats } from './checkpointer.ts';
import { execSql, isCallLocal, queryDb, run, toProvError, type ReadGate } from './db.ts';
import {
  ALLOW_JSON_CHUNK,
  ALLOW_JSON_MIN,
  BULK_CACHE_KIB,
  PRUNE_BATCH,
  WRITER_CACHE_KIB,
  type WriteStatements,
} from './statements.ts';

/** Counters of a SqliteStore, for health output and tests. */
export interface SqliteStoreStats extends CheckpointStats {
  /** Write transactions begun by `apply` (one per group of calls, plus re-runs). */
  transactions: number;
  /** Of those, the ones that committed. */
  commits: number;
  /** `apply` calls that went through a transaction. */
  calls: number;
  /** `apply` calls rejected. */
  failedCalls: number;
  /** Groups re-run because a call failed half-way without a savepoint (see `apply`). */
  retries: number;
  /** Most calls grouped into one transaction so far. */
  largestGroup: number;
  /** Migrations applied by `open` (0 when the schema was already current). */
  migrationsApplied: number;
  /** Groups written by the one-statement fast path (see `BATCH_SCHEMA`); counted in `transactions` too. */
  batched: number;
  /** Groups whose fast-path statement failed and that were re-run through the general path. */
  batchFallbacks: number;
}

interface QueuedCall {
  mutations: readonly Mutation[];
  resolve: () => void;
  reject: (e: ProvError) => void;
  error?: ProvError;
  /** A bulk allowlist import: runs alone, in its own transaction. */
  bulk?: { source: AsyncIterable<string>; result: BulkResult };
  /** Work that runs alone between two groups, outside any transaction (see `solo`). */
  solo?: () => Promise<void>;
}

type AllowUpsert = Extract<Mutation, { kind: 'allow.upsert' }>;

export class SqliteWriter {
  private queue: QueuedCall[] = [];
  private flushing: Promise<void> | undefined;
  private cancelStart: (() => void) | undefined;

  constructor(
    private readonly writer: Database,
    private readonly w: WriteStatements,
    private readonly gate: ReadGate,
    private readonly stats: SqliteStoreStats,
    private readonly delayMs: number,
    private readonly groupStatement: boolean,
    private readonly log: Logger | undefined,
  ) {}

  /** Runs every call already queued (their promises settle as usual); resolves once none is left. */
  async drain(): Promise<void> {
    if (this.cancelStart) {
      this.cancelStart();
      this.cancelStart = undefined;
      this.flushing = this.flushLoop();
    }
    while (this.flushing) await this.flushing;
  }

  /** Queues `mutations` for the next group (see `SqliteStore.apply`). */
  apply(mutations: readonly Mutation[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ mutations, resolve, reject });
      if (this.flushing === undefined && this.cancelStart === undefined) {
        const start = (): void => {
          this.cancelStart = undefined;
          this.flushing = this.flushLoop();
        };
        if (this.delayMs > 0) {
          const t = setTimeout(start, this.delayMs);
          this.cancelStart = () => clearTimeout(t);
        } else {
          const t = setImmediate(start);
          this.cancelStart = () => clearImmediate(t);
        }
      }
    });
  }

  /**
   * Queues a bulk allowlist import: `source` yields JSON arrays of AllowRows (a FileStaging's
   * batches). It runs alone, in its own transaction (see `SqliteStore.bulkUpsertAllow`).
   */
  bulkUpsertAllow(source: AsyncIterable<string>, after: readonly Mutation[] = []): Promise<BulkResult> {
    const result: BulkResult = { rows: 0, added: 0 };
    return new Promise<BulkResult>((resolve, reject) => {
      this.queue.push({ mutations: after, resolve: () => resolve(result), reject, bulk: { source, result } });
      this.startSoon();
    });
  }

  /**
   * Runs `fn` on its own between two groups, with no transaction open on the writer connection:
   * calls queued before it commit first, calls queued after it wait for it. For the WAL
   * checkpointer (`checkpointer.ts`), which needs a moment in which no commit can land.
   */
  solo(fn: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ mutations: [], resolve, reject, solo: fn });
      this.startSoon();
    });
  }

  private startSoon(): void {
    if (this.flushing === undefined && this.cancelStart === undefined) {
      const t = setImmediate(() => {
        this.cancelStart = undefined;
        this.flushing = this.flushLoop();
      });
      this.cancelStart = () => clearImmediate(t);
    }
  }

  private async runSolo(call: QueuedCall): Promise<void> {
    await this.gate.beginWrite();
    try {
      await call.solo!();
      call.resolve();
    } catch (e) {
      call.reject(toProvError(e, 'solo'));
    } finally {
      this.gate.endWrite();
    }
  }

  private async runBulk(call: QueuedCall): Promise<void> {
    const { source, result } = call.bulk!;
    await this.gate.beginWrite();
    let open = false;
    try {
      await execSql(this.writer, `PRAGMA cache_size = -${BULK_CACHE_KIB}`);
      await run(this.w.begin);
      open = true;
      this.stats.transactions++;
      const count = async (): Promise<number> => Number((await queryDb(this.writer, 'SELECT count(*) AS n FROM allowlist'))[0]?.n ?? 0);
      const before = await count();
      const progress = { statements: 0 };
      // Two batches in flight: the next is read while SQLite writes the previous one.
      const inflight: Promise<RunResult>[] = [];
      try {
        for await (const batch of source) {
          inflight.push(run(this.w.allowUpsertJson, [batch]));
          if (inflight.length >= 2) result.rows += (await inflight.shift()!).changes;
        }
      } finally {
        const settled = await Promise.allSettled(inflight);
        for (const r of settled) if (r.status === 'fulfilled') result.rows += r.value.changes;
        const failed = settled.find((r) => r.status === 'rejected');
        if (failed) throw (failed as PromiseRejectedResult).reason;
      }
      await this.applyCall(call.mutations, progress);
      result.added = (await count()) - before;
      await run(this.w.commit);
      open = false;
      this.stats.commits++;
      call.resolve();
    } catch (e) {
      if (open) await run(this.w.rollback).catch(() => undefined);
      this.stats.failedCalls++;
      call.reject(e instanceof ProvError ? e : toProvError(e, 'bulk import'));
    } finally {
      await execSql(this.writer, `PRAGMA cache_size = -${WRITER_CACHE_KIB}`).catch(() => undefined);
      this.gate.endWrite();
    }
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const b = this.queue.findIndex((c) => c.bulk !== undefined || c.solo !== undefined);
        if (b === 0) {
          const alone = this.queue.shift()!;
          await (alone.bulk ? this.runBulk(alone) : this.runSolo(alone));
          continue;
        }
        const group = b < 0 ? this.queue : this.queue.slice(0, b);
        this.queue = b < 0 ? [] : this.queue.slice(b);
        await this.commitGroup(group);
        // Let reads released from the gate start before the next group closes it again.
        if (this.gate.shared) await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async commitGroup(group: QueuedCall[]): Promise<void> {
    let fatal: ProvError | undefined;
    if (group.some((c) => c.mutations.length > 0)) {
      this.stats.calls += group.length;
      this.stats.largestGroup = Math.max(this.stats.largestGroup, group.length);
      try {
        fatal = await this.runTransaction(group);
      } catch (e) {
        fatal = toProvError(e, 'apply');
      }
    }
    for (const call of group) {
      const err = call.error ?? fatal;
      if (err) {
        this.stats.failedCalls++;
        call.reject(err);
      } else {
        call.resolve();
      }
    }
  }

  /**
   * Runs one group in one transaction; marks failed calls in `call.error` and returns the error
   * that failed the whole group, if any.
   *
   * Savepoints are taken lazily: a first pass runs every call without them (they cost two extra
   * thread-pool round trips per call, ~40% of the CPU of a typical two-mutation call). A call
   * whose *first* statement fails left nothing behind (a statement is atomic), so it is simply
   * marked failed. A call that fails after some of its statements ran cannot be undone without a
   * savepoint: the transaction is rolled back and the group re-run, that call left out and every
   * later call wrapped in `SAVEPOINT … RELEASE` (the earlier ones succeed again as they did). A
   * lone call needs no savepoint at all: it is rolled back whole.
   */
  private async runTransaction(group: QueuedCall[]): Promise<ProvError | undefined> {
    await this.gate.beginWrite();
    let open = false;
    try {
      const batch = this.groupStatement ? batchOf(group) : undefined;
      if (batch !== undefined) {
        try {
          await run(this.w.applyBatch, batch);
          this.stats.transactions++;
          this.stats.commits++;
          this.stats.batched++;
          return undefined;
        } catch {
          // Nothing of the group was applied (one statement, rolled back whole): the general path
          // below runs it again and tells which call failed, or fails the group as before.
          this.stats.batchFallbacks++;
        }
      }
      let savepointFrom = group.length;
      for (let pass = 0; ; pass++) {
        if (!group.some((c) => c.error === undefined && c.mutations.length > 0)) return undefined;
        if (pass > 0) this.stats.retries++;
        await run(this.w.begin);
        open = true;
        this.stats.transactions++;
        let dirty = -1;
        let anyApplied = false;
        for (const [i, call] of group.entries()) {
          if (call.error !== undefined || call.mutations.length === 0) continue;
          const savepoint = i >= savepointFrom && call.mutations.length > 1;
          const progress = { statements: 0 };
          try {
            if (savepoint) await run(this.w.savepoint);
            await this.applyCall(call.mutations, progress);
            if (savepoint) await run(this.w.release);
            anyApplied = true;
          } catch (e) {
            if (!isCallLocal(e)) throw e;
            call.error = toProvError(e, 'apply');
            if (savepoint) {
              await run(this.w.rollbackTo);
              await run(this.w.release);
            } else if (progress.statements > 0) {
              dirty = i;
              break;
            }
          }
        }
        if (dirty >= 0) {
          await run(this.w.rollback);
          open = false;
          savepointFrom = dirty;
          continue;
        }
        await run(anyApplied ? this.w.commit : this.w.rollback);
        open = false;
        if (anyApplied) this.stats.commits++;
        return undefined;
      }
    } catch (e) {
      const err = toProvError(e, 'apply');
      this.log?.error({ code: err.code, detail: err.detail, calls: group.length }, 'store transaction failed');
      // Fails harmlessly when SQLite has already rolled back (or COMMIT failed before starting).
      if (open) await run(this.w.rollback).catch(() => undefined);
      return err;
    } finally {
      this.gate.endWrite();
    }
  }

  /** Applies one call's mutations in order, counting the statements that succeeded in `progress`. */
  private async applyCall(ms: readonly Mutation[], progress: { statements: number }): Promise<void> {
    let i = 0;
    while (i < ms.length) {
      const m = ms[i]!; // i < ms.length
      if (m.kind === 'allow.upsert') {
        let j = i + 1;
        while (j < ms.length && ms[j]?.kind === 'allow.upsert') j++;
        await this.upsertAllowRun(ms as readonly AllowUpsert[], i, j, progress);
        i = j;
      } else {
        await this.applyOne(m);
        progress.statements++;
        i++;
      }
    }
  }

  /**
   * Upserts `ms[from..to)` (all `allow.upsert`) in chunks of {@link ALLOW_JSON_CHUNK} rows, one
   * statement each, so a bulk import costs one thread-pool round trip per chunk. Chunks are
   * pipelined: the next one is encoded while the previous one executes (node-sqlite3 runs one
   * statement's queue in order).
   */
  private async upsertAllowRun(
    ms: readonly AllowUpsert[],
    from: number,
    to: number,
    progress: { statements: number },
  ): Promise<void> {
    if (to - from < ALLOW_JSON_MIN) {
      for (let i = from; i < to; i++) {
        await this.applyOne(ms[i]!); // from <= i < to <= ms.length
        progress.statements++;
      }
      return;
    }
    const inflight: Promise<unknown>[] = [];
    try {
      for (let i = from; i < to; i += ALLOW_JSON_CHUNK) {
        const end = Math.min(to, i + ALLOW_JSON_CHUNK);
        const rows: unknown[] = new Array(end - i);
        for (let r = i; r < end; r++) rows[r - i] = allowRow(ms[r]!.entry); // r < end <= to <= ms.length
        inflight.push(run(this.w.allowUpsertJson, [JSON.stringify(rows)]).then(() => void progress.statements++));
        if (inflight.length >= 2) await inflight.shift();
      }
    } finally {
      // Settle every queued chunk before the caller rolls back or moves on.
      const results = await Promise.allSettled(inflight);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
  }

  private async applyOne(m: Mutation): Promise<void> {
    const w = this.w;
    switch (m.kind) {
      case 'allow.upsert': {
        const e = m.entry;
        await run(w.allowUpsert, allowParams(e));
        return;
      }
      case 'allow.delete':
        await run(w.allowDelete, [m.id]);
        return;
      case 'allow.consume': {
        const r = await run(w.allowConsume, [m.at, m.id]);
        if (r.changes === 0) {
          throw new ProvError('conflict', 'allowlist entry is missing or already consumed', { id: m.id });
        }
        return;
      }
      case 'device.upsert':
        await run(w.deviceUpsert, deviceParams(m.device));
        return;
      case 'device.delete':
        await run(w.deviceDelete, [m.id]);
        return;
      case 'pending.upsert':
        await run(w.pendingUpsert, pendingParams(m.pending));
        return;
      case 'pending.delete':
        await run(w.pendingDelete, [m.id]);
        return;
      case 'pending.seen':
        await run(w.pendingSeen, [m.lastSeen, m.count, m.source, m.id]);
        return;
      case 'revocation.put':
        await run(w.revocationPut, revocationParams(m.revocation));
        return;
      case 'revocation.delete':
        await run(w.revocationDelete, [m.id]);
        return;
      case 'key.put':
        await run(w.keyPut, keyParams(m.key));
        return;
      case 'setting.put':
        await run(w.settingPut, [m.name, m.value]);
        return;
      case 'event':
        await run(w.eventInsert, eventParams(m.event));
        return;
      case 'event.copy':
        // An explicit seq also moves AUTOINCREMENT's sqlite_sequence past it.
        await run(w.eventCopy, eventCopyParams(m.event));
        return;
      case 'flag.put':
        await run(w.flagPut, flagParams(m.flag));
        return;
      case 'flag.delete':
        await run(w.flagDelete, [m.id]);
        return;
      case 'flags.trim':
        await run(w.flagsTrim, [m.max]);
        return;
      case 'admin-token.put':
        await run(w.adminTokenPut, adminTokenParams(m.token));
        return;
      case 'admin-token.revoke':
        await run(w.adminTokenRevoke, [m.at, m.by, m.reason, m.jti]);
        return;
      case 'nonce.use':
      case 'nonces.prune':
        // One process: the service's in-memory used-once set is authoritative (see Mutation).
        return;
      case 'pending.trim': {
        const r = await run(w.pendingTrim, [m.keep ?? '', m.max]);
        if (m.removed) m.removed.count += r.changes;
        return;
      }
      case 'pending.expire': {
        const r = await run(w.pendingExpire, [m.before, PRUNE_BATCH]);
        if (m.removed) m.removed.count += r.changes;
        return;
      }
      case 'events.prune': {
        const byAge = await run(w.eventsPruneAge, [m.before, m.limit]);
        const byCap = await run(w.eventsPruneCap, [m.max, Math.max(0, m.limit - byAge.changes)]);
        if (m.removed) m.removed.count += byAge.changes + byCap.changes;
        return;
      }
      default: {
        const unknown: never = m;
        throw new ProvError('internal', 'store apply: unknown mutation kind', {
          kind: String((unknown as { kind?: unknown }).kind),
        });
      }
    }
  }
}
