/**
 * The PostgreSQL store's writer. {@link PgWriter.apply} queues the call; one flush at a time takes
 * every queued call into ONE transaction on a pooled connection (group commit), each call inside its
 * own `SAVEPOINT` when the group has more than one, so a failing call is rolled back and rejected
 * alone while the others commit. A transaction that inserts events holds the event lock until its
 * commit (seqs in commit order, see store.ts); every committing group sends a change notification.
 */
import type { PoolClient } from 'pg';
import { ProvError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import {
  adminTokenParams,
  allowParams,
  allowRowsJson,
  blob,
  deviceParams,
  eventCopyParams,
  eventParams,
  flagParams,
  keyParams,
  pendingParams,
  revocationParams,
} from '../rows.ts';
import type { BulkResult, Mutation } from '../store.ts';
import { isCallLocal, isUnavailable, prepared, toProvError, type Pool } from './db.ts';
import { ALLOW_JSON_CHUNK, ALLOW_JSON_MIN, CHANGE_CHANNEL, PRUNE_BATCH, SQL } from './statements.ts';

/** Counters of a PostgresStore. */
export interface PostgresStoreStats {
  transactions: number;
  commits: number;
  calls: number;
  failedCalls: number;
  largestGroup: number;
  migrationsApplied: number;
  /** Groups run again after a deadlock or serialization failure. */
  retries: number;
}

interface QueuedCall {
  mutations: readonly Mutation[];
  resolve: () => void;
  reject: (e: ProvError) => void;
  error?: ProvError;
}

export class PgWriter {
  private queue: QueuedCall[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  private readonly bulks = new Set<Promise<unknown>>();

  constructor(
    private readonly pool: Pool,
    private readonly stats: PostgresStoreStats,
    /** The payload of this store's change notification for `kinds`. */
    private readonly notice: (kinds: ReadonlySet<string>) => string,
    private readonly log: Logger | undefined,
  ) {}

  /** Resolves once every call queued and every bulk import started has settled. */
  async drain(): Promise<void> {
    while (this.scheduled || this.flushing || this.queue.length > 0) {
      if (this.flushing) await this.flushing;
      else await new Promise((r) => setImmediate(r));
    }
    await Promise.allSettled([...this.bulks]);
  }

  /** Queues `mutations` for the next group transaction; resolves once it committed. */
  apply(mutations: readonly Mutation[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ mutations, resolve, reject });
      if (this.flushing === undefined && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flushing ??= this.flushLoop();
        });
      }
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const group = this.queue;
        this.queue = [];
        await this.commitGroup(group);
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async commitGroup(group: QueuedCall[]): Promise<void> {
    const work = group.filter((c) => c.mutations.length > 0);
    let fatal: ProvError | undefined;
    if (work.length > 0) {
      this.stats.calls += work.length;
      this.stats.largestGroup = Math.max(this.stats.largestGroup, work.length);
      // A deadlock or serialization failure (40P01, 40001) rolls the whole group back: run it again
      // (calls marked failed stay failed), a few times at most.
      for (let attempt = 0; ; attempt++) {
        fatal = await this.runTransaction(work.filter((c) => c.error === undefined));
        const state = (fatal?.detail as { sqlstate?: string } | undefined)?.sqlstate;
        if (attempt >= 3 || (state !== '40P01' && state !== '40001')) break;
        this.stats.retries++;
      }
    }
    for (const call of group) {
      const err = call.error ?? fatal;
      if (err) {
        this.stats.failedCalls++;
        call.reject(err);
      } else call.resolve();
    }
  }

  /** One transaction for `group`; marks failed calls, returns the error that failed all of it. */
  private async runTransaction(group: QueuedCall[]): Promise<ProvError | undefined> {
    let client: PoolClient | undefined;
    let open = false;
    try {
      client = await this.pool.connect();
      const c = client;
      // Take the event lock before any row lock: a group that took rows first and then waited for the
      // lock could deadlock with a holder of the lock waiting for those rows (found by the two-instance
      // bench: every provisioning from one address upserts the same many-IDs flag row). It goes with
      // the BEGIN in one simple query: one round trip instead of two.
      const state = { eventLock: group.some((call) => call.mutations.some((m) => m.kind === 'event' || m.kind === 'event.copy')) };
      open = true;
      await c.query(state.eventLock ? `BEGIN; ${SQL.eventLock}` : 'BEGIN');
      this.stats.transactions++;
      const savepoints = group.length > 1;
      let applied = 0;
      // A call's savepoint is released together with the next call's SAVEPOINT (one round trip), and
      // the last one by the COMMIT itself.
      let unreleased = false;
      for (const call of group) {
        try {
          if (savepoints) await c.query(unreleased ? 'RELEASE apply_call; SAVEPOINT apply_call' : 'SAVEPOINT apply_call');
          unreleased = false;
          await this.applyCall(c, call.mutations, state);
          unreleased = savepoints;
          applied++;
        } catch (e) {
          if (!isCallLocal(e)) throw e;
          call.error = toProvError(e, 'apply');
          if (savepoints) await c.query('ROLLBACK TO apply_call');
        }
      }
      if (applied === 0) {
        await c.query('ROLLBACK');
        open = false;
        return undefined;
      }
      const kinds = new Set<string>();
      for (const call of group) if (call.error === undefined) for (const m of call.mutations) kinds.add(m.kind);
      // The notification and the COMMIT in one simple query (one round trip); a simple query takes no
      // parameters, so the payload goes as an escaped literal.
      await c.query(`SELECT pg_notify('${CHANGE_CHANNEL}', ${c.escapeLiteral(this.notice(kinds))}); COMMIT`);
      open = false;
      this.stats.commits++;
      return undefined;
    } catch (e) {
      const err = toProvError(e, 'apply');
      this.log?.error({ code: err.code, detail: err.detail, calls: group.length }, 'store transaction failed');
      // A connection that failed mid-transaction is not given back to the pool, nor asked for a
      // ROLLBACK it may never answer: destroying it ends the transaction on the server.
      if (client && isUnavailable(e)) {
        client.release(e as Error);
        client = undefined;
      } else if (open) await client?.query('ROLLBACK').catch(() => undefined);
      return err;
    } finally {
      client?.release();
    }
  }

  /**
   * Applies one call's mutations in order; a run of {@link ALLOW_JSON_MIN} or more `allow.upsert`s
   * goes as JSON chunks of {@link ALLOW_JSON_CHUNK} rows, one statement each.
   */
  private async applyCall(c: PoolClient, ms: readonly Mutation[], state: { eventLock: boolean }): Promise<void> {
    let i = 0;
    while (i < ms.length) {
      let j = i;
      while (j < ms.length && ms[j]?.kind === 'allow.upsert') j++;
      if (j - i < ALLOW_JSON_MIN) {
        await this.applyOne(c, ms[i]!, state); // i < ms.length
        i++;
        continue;
      }
      for (let k = i; k < j; k += ALLOW_JSON_CHUNK) {
        const entries = ms.slice(k, Math.min(j, k + ALLOW_JSON_CHUNK)).map((m) => (m as Extract<Mutation, { kind: 'allow.upsert' }>).entry);
        await c.query(prepared(SQL.allowUpsertJson, [allowRowsJson(entries)]));
      }
      i = j;
    }
  }

  private async applyOne(c: PoolClient, m: Mutation, state: { eventLock: boolean }): Promise<void> {
    switch (m.kind) {
      case 'allow.upsert':
        await c.query(prepared(SQL.allowUpsert, allowParams(m.entry)));
        return;
      case 'allow.delete':
        await c.query(prepared(SQL.allowDelete, [m.id]));
        return;
      case 'allow.consume': {
        const r = await c.query(prepared(SQL.allowConsume, [m.at, m.id]));
        if (r.rowCount !== 1) throw new ProvError('conflict', 'allowlist entry is missing or already consumed', { id: m.id });
        return;
      }
      case 'device.upsert':
        await c.query(prepared(SQL.deviceUpsert, deviceParams(m.device)));
        return;
      case 'device.delete':
        await c.query(prepared(SQL.deviceDelete, [m.id]));
        return;
      case 'pending.upsert':
        await c.query(prepared(SQL.pendingUpsert, pendingParams(m.pending)));
        return;
      case 'pending.delete':
        await c.query(prepared(SQL.pendingDelete, [m.id]));
        return;
      case 'pending.seen':
        await c.query(prepared(SQL.pendingSeen, [m.lastSeen, m.count, m.source, m.id]));
        return;
      case 'revocation.put':
        await c.query(prepared(SQL.revocationPut, revocationParams(m.revocation)));
        return;
      case 'revocation.delete':
        await c.query(prepared(SQL.revocationDelete, [m.id]));
        return;
      case 'key.put':
        await c.query(prepared(SQL.keyPut, keyParams(m.key)));
        return;
      case 'setting.put':
        await c.query(prepared(SQL.settingPut, [m.name, m.value]));
        return;
      case 'event':
        if (!state.eventLock) {
          // Held until COMMIT: seqs are then handed out in commit order (see the module comment).
          await c.query(prepared(SQL.eventLock));
          state.eventLock = true;
        }
        await c.query(prepared(SQL.eventInsert, eventParams(m.event)));
        return;
      case 'event.copy':
        if (!state.eventLock) {
          await c.query(prepared(SQL.eventLock));
          state.eventLock = true;
        }
        await c.query(prepared(SQL.eventCopy, eventCopyParams(m.event)));
        await c.query(prepared(SQL.eventSeqFollow));
        return;
      case 'flag.put': {
        // Each instance keeps its own flag book in memory: two may raise "the same" open flag (one per
        // kind and subject, flags_open) under different ids. The second then merges into the first
        // instead of failing the provisioning it rides with.
        const p = flagParams(m.flag);
        if ((await c.query(prepared(SQL.flagInsert, p))).rowCount === 1) return;
        if ((await c.query(prepared(SQL.flagUpdate, p))).rowCount === 1) return;
        await c.query(prepared(SQL.flagMerge, [m.flag.kind, m.flag.subject, m.flag.lastSeen, m.flag.count]));
        return;
      }
      case 'flag.delete':
        await c.query(prepared(SQL.flagDelete, [m.id]));
        return;
      case 'flags.trim':
        await c.query(prepared(SQL.flagsTrim, [m.max]));
        return;
      case 'admin-token.put':
        await c.query(prepared(SQL.adminTokenPut, adminTokenParams(m.token)));
        return;
      case 'admin-token.revoke':
        await c.query(prepared(SQL.adminTokenRevoke, [m.at, m.by, m.reason, m.jti]));
        return;
      case 'nonce.use': {
        const r = await c.query(prepared(SQL.nonceUse, [blob(m.nonce), m.expires]));
        if (r.rowCount !== 1) throw new ProvError('nonce', 'nonce already used');
        return;
      }
      case 'nonces.prune':
        await c.query(prepared(SQL.noncesPrune, [m.before, PRUNE_BATCH]));
        return;
      case 'pending.trim': {
        const r = await c.query(prepared(SQL.pendingTrim, [m.keep ?? '', m.max]));
        if (m.removed) m.removed.count += r.rowCount ?? 0;
        return;
      }
      case 'pending.expire': {
        const r = await c.query(prepared(SQL.pendingExpire, [m.before, PRUNE_BATCH]));
        if (m.removed) m.removed.count += r.rowCount ?? 0;
        return;
      }
      case 'events.prune': {
        const byAge = await c.query(prepared(SQL.eventsPruneAge, [m.before, m.limit]));
        const byCap = await c.query(prepared(SQL.eventsPruneCap, [m.max, Math.max(0, m.limit - (byAge.rowCount ?? 0))]));
        if (m.removed) m.removed.count += (byAge.rowCount ?? 0) + (byCap.rowCount ?? 0);
        return;
      }
      default: {
        const unknown: never = m;
        throw new ProvError('internal', 'store apply: unknown mutation kind', { kind: String((unknown as { kind?: unknown }).kind) });
      }
    }
  }

  /**
   * Upserts every batch of `source` (JSON arrays of AllowRows: a FileStaging's batches), then `after`, in one
   * transaction on its own connection: all or nothing. Returns rows written and ids that were new.
   */
  async bulkUpsertAllow(source: AsyncIterable<string>, after: readonly Mutation[] = []): Promise<BulkResult> {
    const run = (async () => {
      const c = await this.pool.connect().catch((e: unknown) => {
        throw toProvError(e, 'bulk import');
      });
      let open = false;
      try {
        await c.query('BEGIN');
        open = true;
        const result = { rows: 0, added: 0 };
        for await (const batch of source) {
          const r = await c.query<{ rows: number; added: number }>(prepared(SQL.allowUpsertJson, [batch]));
          result.rows += r.rows[0]!.rows;
          result.added += r.rows[0]!.added;
        }
        const state = { eventLock: false };
        for (const m of after) await this.applyOne(c, m, state);
        await c.query(prepared(SQL.notify, [this.notice(new Set(['allow.upsert', ...after.map((m) => m.kind)]))]));
        await c.query('COMMIT');
        open = false;
        return result;
      } catch (e) {
        if (open) await c.query('ROLLBACK').catch(() => undefined);
        throw e instanceof ProvError ? e : toProvError(e, 'bulk import');
      } finally {
        c.release();
      }
    })();
    this.bulks.add(run);
    try {
      return await run;
    } finally {
      this.bulks.delete(run);
    }
  }
}
