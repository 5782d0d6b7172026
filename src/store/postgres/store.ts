/**
 * The PostgreSQL implementation of the {@link Store} seam (issue 16), on node-postgres (`pg`), for
 * several idprov instances sharing one database. SQLite stays the embedded default.
 *
 * This file opens and closes the store and holds the readers, membership and change notifications;
 * the writer is `writer.ts`, the statements `statements.ts`, the schema `schema.ts`, row building
 * `../rows.ts` (shared with SQLite).
 *
 * Writes: {@link PostgresStore.apply} queues the call; one flush at a time takes every queued call
 * into ONE transaction on a pooled connection (group commit, as the SQLite store does), each call
 * inside its own `SAVEPOINT` when the group has more than one, so a failing call is rolled back and
 * rejected alone while the others commit. A call's promise resolves only after `COMMIT` returned:
 * with the default `synchronous_commit = on` the commit is on disk (WAL flushed), so a token sent
 * after `apply` resolved always has its record behind it, on every instance.
 *
 * Allowlist consumption: `UPDATE … SET consumed_at WHERE id = $1 AND consumed_at IS NULL` and a row
 * count check. Two instances racing for one entry: PostgreSQL's row lock makes the second UPDATE wait
 * for the first transaction, then re-check the row (READ COMMITTED re-evaluates the WHERE on the new
 * version), find it consumed and update nothing — that call fails with `conflict`.
 *
 * Event order: `events.seq` comes from an identity sequence, whose values are handed out at INSERT
 * time, not at commit: two instances could commit seq 12 before seq 11, and a feed reader that saw 12
 * would skip 11 for ever. So a transaction that inserts events first takes a transaction-level
 * advisory lock ({@link EVENT_LOCK}) and holds it until its commit: seqs are then assigned in commit
 * order across all instances, and the feed (`listEvents(after)`) has one global order without gaps
 * appearing behind a reader. The cost: event-writing commits are serialized database-wide (one
 * group per instance at a time, each sharing one WAL flush among its calls).
 *
 * Change wake-ups: every committing group also runs `NOTIFY idprov_changes` (delivered at commit,
 * to every listening session); {@link PostgresStore.onForeignChange} listens on a dedicated
 * connection and tells the composition root, which wakes long polls and SSE and bumps ETags.
 *
 * Reads: single statements on pooled connections; each sees every transaction committed before it
 * started. {@link PostgresStore.loadSubject} reads the four subject tables in one statement (one
 * snapshot).
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import pg from 'pg';
import type { QueryResult } from 'pg';
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
import type { Logger } from '../../log.ts';
import { clampLimit, pageOf } from '../paging.ts';
import {
  adminTokenFromRow,
  allowFromRow,
  blob,
  deviceFromRow,
  eventFromRow,
  flagFromRow,
  keyFromRow,
  pendingFromRow,
  pskFromRow,
  revocationFromRow,
  type Param,
  type Row,
} from '../rows.ts';
import { FileStaging } from '../staging.ts';
import type { AllowStaging, BulkResult, ListOptions, Mutation, Page, PskEntry, Store, StoreTable } from '../store.ts';
import { TYPES, closedError, prepared, toProvError, type Pool } from './db.ts';
import { PG_MIGRATIONS, migratePostgres } from './schema.ts';
import { CHANGE_CHANNEL, SQL } from './statements.ts';
import { PgWriter, type PostgresStoreStats } from './writer.ts';

export { isUnavailable } from './db.ts';
export { CHANGE_CHANNEL, EVENT_LOCK } from './statements.ts';
export type { PostgresStoreStats } from './writer.ts';

/** Options of {@link PostgresStore.open}. */
export interface PostgresStoreOptions {
  log?: Logger;
  /** Pooled connections (default 8): one at a time writes, the others read. */
  poolSize?: number;
  /** How long a query waits for a pooled connection / a connection attempt, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Client-side limit on one query's answer, ms (default 10000). */
  queryTimeoutMs?: number;
  /**
   * Directory of bulk-import staging files, which hold out-of-band secrets (default: the system's
   * temporary directory; the server passes its data directory).
   */
  stagingDir?: string;
  /** Replaces {@link PG_MIGRATIONS}; for tests of the migration runner only. @internal */
  migrations?: readonly string[];
}

/** One running instance, as its heartbeat row records it. */
export interface InstanceRecord {
  /** Random per process start. */
  id: string;
  /** Its mDNS instance name ('' when it does not advertise). */
  name: string;
  host: string;
  coapPort: number;
  coapsPort: number;
  adminPort: number;
  version: string;
  startedAt: number;
  seenAt: number;
}

/**
 * {@link Store} on PostgreSQL; see the module comment. Create with {@link PostgresStore.open}, close
 * with {@link PostgresStore.close}. Row semantics are the SQLite store's (whole-row upserts,
 * consume-at-most-once, deletes of missing rows succeed, `event` ignores any `seq` given).
 */
export class PostgresStore implements Store {
  readonly stats: PostgresStoreStats = { transactions: 0, commits: 0, calls: 0, failedCalls: 0, largestGroup: 0, migrationsApplied: 0, retries: 0 };
  private readonly writer: PgWriter;
  private closing: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private listener: InstanceType<typeof pg.Client> | undefined;
  /** Tags this store's notifications, so that it ignores its own. */
  readonly instanceId = randomBytes(6).toString('hex');

  private constructor(
    private readonly pool: Pool,
    private readonly url: string,
    private readonly log: Logger | undefined,
    private readonly stagingDir: string,
  ) {
    this.writer = new PgWriter(pool, this.stats, (kinds) => this.notice(kinds), log);
  }

  // -------------------------------------------------------------------------------------------
  // Writes (the writer: writer.ts)

  /** Queues `mutations` for the next group transaction; resolves once it committed. */
  apply(mutations: readonly Mutation[]): Promise<void> {
    if (this.closing) return Promise.reject(closedError());
    return this.writer.apply(mutations);
  }

  /** Bulk allowlist import in one transaction on its own connection (Store.bulkUpsertAllow). */
  async bulkUpsertAllow(staged: AllowStaging, after: readonly Mutation[] = []): Promise<BulkResult> {
    if (this.closing) throw closedError();
    return this.writer.bulkUpsertAllow(FileStaging.of(staged).jsonBatches(), after);
  }

  /** A staging file in `stagingDir` (see `store/staging.ts`). */
  stageAllow(): Promise<AllowStaging> {
    if (this.closing) return Promise.reject(closedError());
    return FileStaging.create(this.stagingDir);
  }

  /** Connects, migrates (one instance at a time) and returns the store. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const log = opts.log;
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 8,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      types: TYPES,
      application_name: 'idprov',
      keepAlive: true,
      // A query that gets no answer (the database or the path to it gone silent, no RST) fails after
      // this instead of hanging the request: `unavailable`, 5.03 with Max-Age.
      query_timeout: opts.queryTimeoutMs ?? 10_000,
      // An instance cut off mid-transaction would hold its row locks and the event lock until the
      // server noticed the dead connection (TCP keepalive: hours); our transactions are never idle
      // for long, so the server ends such a session after 10 s and the other instances carry on.
      options: '-c idle_in_transaction_session_timeout=10000',
    });
    // An idle pooled connection that the server drops (restart, failover) must not crash the process.
    pool.on('error', (e) => log?.warn({ err: e.message }, 'postgres connection lost (the pool reconnects on next use)'));
    // A checked-out connection between two queries of a transaction has no pool listener: without its
    // own, a server shutdown (57P01) arriving then would be an uncaught 'error' event, i.e. a crash.
    // The transaction's next query fails instead and the connection is discarded.
    pool.on('connect', (client) => client.on('error', (e) => log?.warn({ err: e.message }, 'postgres connection error')));
    const store = new PostgresStore(pool, url, log, opts.stagingDir ?? tmpdir());
    try {
      const client = await pool.connect();
      try {
        store.stats.migrationsApplied = await migratePostgres(client, opts.migrations ?? PG_MIGRATIONS, log);
      } finally {
        client.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw toProvError(e, 'open');
    }
    return store;
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  private async query(op: string, sql: string, params: Param[]): Promise<QueryResult<Row>> {
    if (this.closing) throw closedError();
    const p = this.pool.query<Row>(prepared(sql, params));
    this.inflight.add(p);
    try {
      return await p;
    } catch (e) {
      throw toProvError(e, op);
    } finally {
      this.inflight.delete(p);
    }
  }

  private async rows<T>(op: string, sql: string, params: Param[], map: (r: Row) => T): Promise<T[]> {
    return (await this.query(op, sql, params)).rows.map(map);
  }

  private async one<T>(op: string, sql: string, params: Param[], map: (r: Row) => T): Promise<T | undefined> {
    const [r] = (await this.query(op, sql, params)).rows;
    return r === undefined ? undefined : map(r);
  }

  /** The four subject records of `id`, from one statement (one snapshot). */
  async loadSubject(id: string): Promise<SubjectRecords> {
    const r = (await this.query('loadSubject', SQL.loadSubject, [id])).rows[0]!; // a SELECT without FROM yields exactly one row
    const out: SubjectRecords = {};
    if (r.a !== null) out.allow = allowFromRow(r.a as Row);
    if (r.d !== null) out.device = deviceFromRow(r.d as Row);
    if (r.p !== null) out.pending = pendingFromRow(r.p as Row);
    if (r.r !== null) out.revocation = revocationFromRow(r.r as Row);
    return out;
  }

  getAllow(id: string): Promise<AllowEntry | undefined> {
    return this.one('getAllow', SQL.getAllow, [id], allowFromRow);
  }

  /** One row whether or not `id` is allowlisted (Store.pskOf). */
  async pskOf(id: string): Promise<{ secret?: string; expires?: number }> {
    const [r] = (await this.query('pskOf', SQL.pskOf, [id])).rows;
    const out: { secret?: string; expires?: number } = {};
    if (typeof r?.secret === 'string') out.secret = r.secret;
    if (typeof r?.expires === 'number') out.expires = r.expires;
    return out;
  }

  getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.one('getDevice', SQL.getDevice, [id], deviceFromRow);
  }

  getPending(id: string): Promise<PendingRecord | undefined> {
    return this.one('getPending', SQL.getPending, [id], pendingFromRow);
  }

  getRevocation(id: string): Promise<Revocation | undefined> {
    return this.one('getRevocation', SQL.getRevocation, [id], revocationFromRow);
  }

  private async page<T extends { id: string }>(op: string, sql: string, opts: ListOptions | undefined, map: (r: Row) => T, extra: Param[] = []): Promise<Page<T>> {
    const limit = clampLimit(opts?.limit);
    return pageOf(await this.rows(op, sql, [opts?.after ?? '', limit + 1, ...extra], map), limit, (t) => t.id);
  }

  listAllow(opts?: ListOptions): Promise<Page<AllowEntry>> {
    return this.page('listAllow', SQL.listAllow, opts, allowFromRow);
  }

  listPsk(opts?: ListOptions): Promise<Page<PskEntry>> {
    return this.page('listPsk', SQL.listPsk, opts, pskFromRow);
  }

  listDevices(opts?: ListOptions): Promise<Page<DeviceRecord>> {
    return this.page('listDevices', SQL.listDevices, opts, deviceFromRow);
  }

  listPending(opts?: ListOptions & { status?: PendingStatus }): Promise<Page<PendingRecord>> {
    if (opts?.status !== undefined) return this.page('listPending', SQL.listPendingByStatus, opts, pendingFromRow, [opts.status]);
    return this.page('listPending', SQL.listPending, opts, pendingFromRow);
  }

  listRevocations(opts?: ListOptions): Promise<Page<Revocation>> {
    return this.page('listRevocations', SQL.listRevocations, opts, revocationFromRow);
  }

  listFlags(opts?: ListOptions & { status?: 'open' | 'cleared' }): Promise<Page<FlagRecord>> {
    const sql = opts?.status === 'open' ? SQL.listFlagsOpen : opts?.status === 'cleared' ? SQL.listFlagsCleared : SQL.listFlags;
    return this.page('listFlags', sql, opts, flagFromRow);
  }

  getFlag(id: string): Promise<FlagRecord | undefined> {
    return this.one('getFlag', SQL.getFlag, [id], flagFromRow);
  }

  getAdminToken(jti: string): Promise<AdminTokenRecord | undefined> {
    return this.one('getAdminToken', SQL.getAdminToken, [jti], adminTokenFromRow);
  }

  async listAdminTokens(opts: { after?: string | undefined; limit: number }): Promise<Page<AdminTokenRecord>> {
    const limit = clampLimit(opts.limit);
    return pageOf(await this.rows('listAdminTokens', SQL.listAdminTokens, [opts.after ?? '', limit + 1], adminTokenFromRow), limit, (t) => t.jti);
  }

  async macPeers(mac: Uint8Array, exceptId: string, limit: number): Promise<string[]> {
    return this.rows('macPeers', SQL.macPeers, [blob(mac), exceptId, clampLimit(limit)], (r) => r.id as string);
  }

  /** Waiting requests: a count over the partial index `pending_by_age` (no shared counter row to contend on). */
  async pendingWaiting(): Promise<number> {
    return (await this.one('pendingWaiting', SQL.pendingWaiting, [], (r) => r.n as number)) ?? 0;
  }

  listKeys(): Promise<TokenKeyRecord[]> {
    return this.rows('listKeys', SQL.listKeys, [], keyFromRow);
  }

  getSetting(name: string): Promise<string | undefined> {
    return this.one('getSetting', SQL.getSetting, [name], (r) => r.value as string);
  }

  listSettings(): Promise<Array<{ name: string; value: string }>> {
    return this.rows('listSettings', SQL.listSettings, [], (r) => ({ name: r.name as string, value: r.value as string }));
  }

  listEvents(afterSeq: number, limit: number): Promise<EventRecord[]> {
    const after = Number.isFinite(afterSeq) ? Math.trunc(afterSeq) : 0;
    return this.rows('listEvents', SQL.listEvents, [after, clampLimit(limit)], eventFromRow);
  }

  async counts(): Promise<Record<StoreTable, number>> {
    const [r] = (await this.query('counts', SQL.counts, [])).rows;
    return r as Record<StoreTable, number>; // one integer column per table, named as StoreTable
  }

  // -------------------------------------------------------------------------------------------
  // Membership (not part of the Store seam: only a shared database has siblings)

  /** Inserts or refreshes this instance's membership row (`seenAt` = now, seconds). */
  async heartbeat(m: InstanceRecord): Promise<void> {
    await this.query('heartbeat', SQL.heartbeat, [m.id, m.name, m.host, m.coapPort, m.coapsPort, m.adminPort, m.version, m.startedAt, m.seenAt]);
  }

  /** Instances whose heartbeat is not older than `since` (seconds), by name. */
  listInstances(since: number): Promise<InstanceRecord[]> {
    return this.rows('listInstances', SQL.listInstances, [since], (r) => ({
      id: r.id as string, name: r.name as string, host: r.host as string, coapPort: r.coap_port as number, coapsPort: r.coaps_port as number,
      adminPort: r.admin_port as number, version: r.version as string, startedAt: r.started_at as number, seenAt: r.seen_at as number,
    }));
  }

  /** Removes this instance's row (clean shutdown; a crashed one just stops being refreshed). */
  async leave(id: string): Promise<void> {
    await this.query('leave', SQL.leave, [id]);
  }

  /** Highest migration recorded (for `diag` and tests). */
  async schemaVersion(): Promise<number> {
    return (await this.one('schemaVersion', 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations', [], (r) => r.v as number)) ?? 0;
  }

  // -------------------------------------------------------------------------------------------
  // Change notifications

  /** The payload of a change notification: `<instanceId> <kind>,<kind>…`. */
  private notice(kinds: ReadonlySet<string>): string {
    return `${this.instanceId} ${[...kinds].join(',')}`;
  }

  /**
   * Calls `fn` with the mutation kinds after another PostgresStore (another instance) commits on the
   * same database, via LISTEN on a dedicated connection; this store's own commits are skipped (its
   * ObservedStore has seen them). The connection is re-established after a loss (every 1 s until it is
   * back), and `fn('unknown')` is called then, since notifications sent meanwhile are lost. Resolves,
   * once listening, to a function that stops listening.
   */
  async onForeignChange(fn: (kinds: readonly Mutation['kind'][] | 'unknown') => void): Promise<() => void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const retry = (): void => {
      if (!stopped && !this.closing && timer === undefined) timer = setTimeout(() => void connect(false), 1000);
    };
    const connect = async (first: boolean): Promise<void> => {
      timer = undefined;
      if (stopped || this.closing) return;
      const client = new pg.Client({ connectionString: this.url, types: TYPES, application_name: 'idprov-listen' });
      client.on('error', () => undefined);
      client.on('end', () => {
        if (this.listener === client) this.listener = undefined;
        retry();
      });
      client.on('notification', (n) => {
        const [from, kinds] = (n.payload ?? '').split(' ');
        if (from === this.instanceId) return;
        fn(kinds ? (kinds.split(',').filter(Boolean) as Mutation['kind'][]) : 'unknown');
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${CHANGE_CHANNEL}`);
        if (stopped) {
          await client.end();
          return;
        }
        this.listener = client;
        if (!first) fn('unknown');
      } catch (e) {
        this.log?.warn({ err: (e as Error).message }, 'postgres LISTEN connection failed; retrying');
        await client.end().catch(() => undefined);
        retry();
      }
    };
    // Resolve once the first LISTEN is in place (or failed: then the retry loop takes over), so that a
    // commit made after the caller's start cannot be missed.
    await connect(true);
    return () => {
      stopped = true;
      clearTimeout(timer);
      void this.listener?.end().catch(() => undefined);
      this.listener = undefined;
    };
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /** Commits every call already made, waits for running reads, closes the pool. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.writer.drain();
      await Promise.allSettled([...this.inflight]);
      await this.listener?.end().catch(() => undefined);
      await this.pool.end();
    })();
    return this.closing;
  }
}
