// Over 500 lines, kept whole: the opening, closing and readers of one SQLite store share its connections (writer, schema and statements are already their own files).
/**
 * The SQLite implementation of the {@link Store} seam (docs/architecture.md "store"), on the `sqlite3`
 * npm package (callback API, wrapped in the promise helpers of `db.ts`). This file opens and closes
 * the store and holds the readers; the writer with its group commit is `writer.ts`, the schema
 * `schema.ts`, the statements `statements.ts`.
 *
 * Connections: one **writer** connection owns every write transaction; file databases also get
 * **reader** connections (`PRAGMA query_only`). In WAL mode a reader sees exactly the transactions
 * committed before its statement started, so reads never observe a group that is still in flight
 * (or that is later rolled back), and they do not wait behind the writer's fsync. `':memory:'`
 * has a single connection; there a small gate (`ReadGate`) keeps reads out while a write
 * transaction is open.
 *
 * Writes: {@link SqliteStore.apply} queues the call; one flush at a time runs every queued call in
 * a single `BEGIN IMMEDIATE … COMMIT` (group commit). A call whose mutation fails is rolled back and
 * rejected alone while the others commit. A call's promise settles only after the COMMIT (or
 * ROLLBACK) of its group has returned.
 *
 * Durability: WAL with `synchronous=FULL`. With `NORMAL`, WAL mode fsyncs only at checkpoints, so a
 * COMMIT that has returned — and after which the service has already sent a token — can vanish on
 * power loss or an OS crash (a process kill -9 alone would not lose it: the WAL is in the page
 * cache). `FULL` fsyncs the WAL at every COMMIT; group commit shares that one fsync among every call
 * of the group, which is what keeps the cost acceptable.
 */
import { constants as fsConstants } from 'node:fs';
import { chmod, mkdir, open as openFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import type { Database, Statement } from 'sqlite3';
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
import { BATCH_SCHEMA } from './batch.ts';
import { ReadGate, all, closeDatabase, closedError, execSql, finalize, openDatabase, queryDb, queryRow, toProvError } from './db.ts';
import { subjectFromSlots } from './rows.ts';
import { MIGRATIONS, migrate } from './schema.ts';
import { READ_SQL, READ_STATEMENT_COPIES, WRITER_CACHE_KIB, WRITE_SQL, prepareAll, type ReadStatements, type WriteStatements } from './statements.ts';
import { DEFAULT_CHECKPOINT_POLICY, WalCheckpointer, type CheckpointPolicy } from './checkpointer.ts';
import { SqliteWriter, type SqliteStoreStats } from './writer.ts';

export type { SqliteStoreStats } from './writer.ts';
export { MIGRATIONS } from './schema.ts';

/** Options of {@link SqliteStore.open}. */
export interface SqliteStoreOptions {
  /** Logger (a pino child); nothing is logged when absent. */
  log?: Logger;
  /**
   * How long the first {@link SqliteStore.apply} call on an idle writer waits for companions before
   * its transaction starts, in ms. `0` (default) waits one event-loop turn (`setImmediate`), which
   * already groups every call made while handling the same batch of I/O. Calls that arrive while a
   * transaction is in flight never wait longer than that transaction.
   */
  groupCommitMaxDelayMs?: number;
  /**
   * Write a group of the common provisioning mutations as one statement (see `BATCH_SCHEMA`;
   * default true). `false` sends every mutation as its own statement, as the general path does —
   * for comparisons (`tools/bench/store.ts`) and diagnosis.
   */
  groupStatement?: boolean;
  /** `PRAGMA busy_timeout` of every connection, in ms (default 5000). */
  busyTimeoutMs?: number;
  /**
   * Reader connections of a file database, used round robin (default 2: on two cores it measured
   * ~30% more `loadSubject`/s than one). `':memory:'` always shares the writer connection.
   */
  readers?: number;
  /**
   * Directory of bulk-import staging files (default: the database's directory; the system's
   * temporary directory for `':memory:'`).
   */
  stagingDir?: string;
  /**
   * When the WAL is checkpointed (file databases; see `checkpointer.ts`). Default
   * {@link DEFAULT_CHECKPOINT_POLICY}.
   */
  checkpoint?: Partial<CheckpointPolicy>;
  /**
   * Replaces {@link MIGRATIONS}. For tests of the migration runner only.
   * @internal
   */
  migrations?: readonly string[];
}

/** What {@link SqliteStore.diagnostics} reports. */
export interface SqliteDiagnostics {
  /** `wal` for a file database, `memory` for `':memory:'`. */
  journalMode: string;
  /** `full` (see the module comment for why not `normal`). */
  synchronous: string;
  foreignKeys: boolean;
  busyTimeoutMs: number;
  sqliteVersion: string;
  /** Highest migration recorded in `schema_migrations`. */
  schemaVersion: number;
}

interface ReadConnection {
  db: Database;
  st: ReadStatements;
}

/**
 * {@link Store} on SQLite. Create with {@link SqliteStore.open}; close with {@link SqliteStore.close}.
 *
 * Semantics beyond the interface:
 * - every `*.upsert` / `*.put` replaces the whole row with the record given (absent optional fields
 *   become NULL);
 * - `allow.consume` consumes an entry at most once: when the entry is missing or already consumed,
 *   the call fails with `conflict` and none of its mutations is applied — two concurrent
 *   provisionings cannot both spend one pre-approval;
 * - deletes of missing rows succeed; `event` ignores any `seq` given and lets SQLite assign it;
 * - records passed to `apply` must not be modified until its promise settles (they are bound when
 *   the group's transaction runs).
 */
/** How often {@link SqliteStore.onForeignChange} looks for other processes' commits (ms). */
export const FOREIGN_POLL_MS = 2000;

export class SqliteStore implements Store {
  /** Counters for health output and tests; read-only for callers. */
  readonly stats: SqliteStoreStats = {
    transactions: 0,
    commits: 0,
    retries: 0,
    calls: 0,
    failedCalls: 0,
    largestGroup: 0,
    migrationsApplied: 0,
    batched: 0,
    batchFallbacks: 0,
    checkpoints: 0,
    writerCheckpoints: 0,
    walFrames: 0,
  };

  private readonly writer: SqliteWriter;
  private readonly gate: ReadGate;
  private readonly checkpointer: WalCheckpointer | undefined;
  private closing: Promise<void> | undefined;
  private nextReader = 0;
  /** Stops of the {@link SqliteStore.onForeignChange} watches, run by `close`. */
  private readonly watches = new Set<() => void>();

  private constructor(
    private readonly db: Database,
    private readonly w: WriteStatements,
    private readonly readers: readonly ReadConnection[],
    shared: boolean,
    delayMs: number,
    groupStatement: boolean,
    private readonly log: Logger | undefined,
    private readonly stagingDir: string,
    private readonly checkpointDb: Database | undefined,
    checkpoint: CheckpointPolicy,
  ) {
    this.gate = new ReadGate(shared);
    this.writer = new SqliteWriter(db, w, this.gate, this.stats, delayMs, groupStatement, log);
    if (checkpointDb) {
      this.checkpointer = new WalCheckpointer(checkpointDb, db, this.writer, () => this.stats.commits, this.stats, checkpoint, log);
      this.checkpointer.start();
    }
  }

  /**
   * Opens (creating when missing) the database at `path` — a file path, or `':memory:'` for tests —
   * applies pending {@link MIGRATIONS} and prepares every statement.
   *
   * For a file: the parent directory is created (mode 0700) when missing; the database file is
   * created with mode 0600 and it and its `-wal` / `-shm` files are chmod-ed to 0600, since it holds
   * token-signing keys and OOB secrets. Pragmas: `journal_mode=WAL`, `synchronous=FULL` (see the
   * module comment), `busy_timeout`, `foreign_keys=ON`; the writer's `wal_autocheckpoint=0`, the
   * WAL being checkpointed from a connection of its own (`checkpointer.ts`).
   *
   * @throws ProvError `internal` when the database cannot be opened or migrated, or when it was
   * written by a newer schema than this code knows.
   */
  static async open(path: string, opts: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const memory = path === ':memory:';
    const log = opts.log;
    const busy = Math.max(0, Math.trunc(opts.busyTimeoutMs ?? 5000));
    const opened: Database[] = [];
    const prepared: Statement[] = [];
    try {
      if (!memory) {
        await mkdir(dirname(path), { recursive: true, mode: 0o700 });
        const fh = await openFile(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o600);
        await fh.close();
        await chmod(path, 0o600);
      }
      const writer = await openDatabase(path);
      opened.push(writer);
      await execSql(writer, `PRAGMA busy_timeout = ${busy}`);
      if (!memory) {
        const [mode] = await queryDb(writer, 'PRAGMA journal_mode = WAL');
        if (String(mode?.journal_mode).toLowerCase() !== 'wal') {
          throw new ProvError('internal', `store open: cannot enable WAL (journal_mode ${String(mode?.journal_mode)})`);
        }
        // Keep the WAL file from staying huge after a bulk import (it is truncated when it restarts).
        await execSql(writer, 'PRAGMA journal_size_limit = 67108864');
        // No checkpoint inside a COMMIT: the checkpointer's connection runs them (checkpointer.ts).
        await execSql(writer, 'PRAGMA wal_autocheckpoint = 0');
      }
      await execSql(writer, `PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -${WRITER_CACHE_KIB}`);
      const applied = await migrate(writer, opts.migrations ?? MIGRATIONS, log);
      await execSql(writer, BATCH_SCHEMA);
      const w = await prepareAll(writer, WRITE_SQL, prepared);

      const readers: ReadConnection[] = [];
      let checkpointDb: Database | undefined;
      if (memory) {
        readers.push({ db: writer, st: await prepareAll(writer, READ_SQL, prepared) });
      } else {
        const n = Math.max(1, Math.trunc(opts.readers ?? 2));
        for (let i = 0; i < n; i++) {
          const db = await openDatabase(path);
          opened.push(db);
          await execSql(db, `PRAGMA busy_timeout = ${busy}; PRAGMA query_only = ON; PRAGMA cache_size = -32768`);
          readers.push({ db, st: await prepareAll(db, READ_SQL, prepared) });
        }
        // More statement handles per connection (see READ_STATEMENT_COPIES), interleaved across the
        // connections so that consecutive reads go to different ones.
        const copies = READ_STATEMENT_COPIES;
        const conns = readers.length;
        for (let c = 1; c < copies; c++) {
          for (let i = 0; i < conns; i++) readers.push({ db: readers[i]!.db, st: await prepareAll(readers[i]!.db, READ_SQL, prepared) });
        }
        checkpointDb = await openDatabase(path);
        opened.push(checkpointDb);
        // synchronous=FULL: the checkpoint fsyncs the database file before the WAL may restart.
        await execSql(checkpointDb, `PRAGMA busy_timeout = ${busy}; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0`);
        for (const suffix of ['-wal', '-shm']) {
          await chmod(path + suffix, 0o600).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'ENOENT') throw e;
          });
        }
      }
      const stagingDir = opts.stagingDir ?? (memory ? tmpdir() : dirname(path));
      const checkpoint = { ...DEFAULT_CHECKPOINT_POLICY, ...opts.checkpoint };
      const store = new SqliteStore(writer, w, readers, memory, Math.max(0, opts.groupCommitMaxDelayMs ?? 0), opts.groupStatement ?? true, log, stagingDir, checkpointDb, checkpoint);
      store.stats.migrationsApplied = applied;
      log?.debug({ path, migrationsApplied: applied, readers: readers.length }, 'store opened');
      return store;
    } catch (e) {
      await Promise.all(prepared.map(finalize));
      for (const db of opened.reverse()) await closeDatabase(db).catch(() => undefined);
      throw toProvError(e, 'open');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Writes (the writer: writer.ts)

  /**
   * Applies `mutations` atomically, grouped with concurrent calls into one transaction. Resolves
   * once the transaction containing them has committed; rejects with a {@link ProvError} — and
   * applies none of them — when one of them fails, or when the group's transaction fails as a
   * whole. Codes: `conflict` for a UNIQUE / PRIMARY KEY / FOREIGN KEY violation and for an
   * `allow.consume` of a missing or consumed entry; `internal` for anything else, including a
   * record that breaks a CHECK / NOT NULL / type rule of the schema (a caller bug), I/O errors,
   * and calls made after {@link SqliteStore.close}.
   */
  apply(mutations: readonly Mutation[]): Promise<void> {
    if (this.closing) return Promise.reject(closedError());
    return this.writer.apply(mutations);
  }

  /**
   * Upserts every entry staged in `staged` (from {@link SqliteStore.stageAllow}), in ONE
   * transaction, then applies `after` (e.g. the audit event) in it and commits: all or nothing. The
   * staging file is read back in batches of 5,000 rows, each one JSON statement unpacked by SQLite's
   * `jsonb_each`, so memory stays bounded by the batch size whatever the number of entries. If reading
   * fails, the transaction is rolled back and the promise rejects with that error. Other writes wait
   * while it runs (it holds the write transaction).
   */
  async bulkUpsertAllow(staged: AllowStaging, after: readonly Mutation[] = []): Promise<BulkResult> {
    if (this.closing) throw closedError();
    return this.writer.bulkUpsertAllow(FileStaging.of(staged).jsonBatches(), after);
  }

  /** A staging file in the database's directory (see `store/staging.ts`). */
  stageAllow(): Promise<AllowStaging> {
    if (this.closing) return Promise.reject(closedError());
    return FileStaging.create(this.stagingDir);
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  /** Runs `fn` on a reader connection (round robin), or behind the gate on a shared connection. */
  private async read<T>(op: string, fn: (st: ReadStatements) => Promise<T>): Promise<T> {
    if (this.closing) throw closedError();
    await this.gate.enterRead();
    const conn = this.readers[this.nextReader++ % this.readers.length]!;
    try {
      return await fn(conn.st);
    } catch (e) {
      throw toProvError(e, op);
    } finally {
      this.gate.exitRead();
    }
  }

  /**
   * Allowlist entry, device, pending request and revocation of `id`, read by one statement (one
   * snapshot), so they are mutually consistent and include every `apply` that has resolved.
   */
  loadSubject(id: string): Promise<SubjectRecords> {
    return this.read('loadSubject', async (st) => subjectFromSlots(await all(st.loadSubject, [id]), id));
  }

  /** The allowlist entry of `id`, if any. */
  getAllow(id: string): Promise<AllowEntry | undefined> {
    return this.getOne('getAllow', (st) => st.getAllow, id, allowFromRow);
  }

  /** The DTLS PSK fields of `id`'s allowlist entry (one row whether or not it exists). */
  pskOf(id: string): Promise<{ secret?: string; expires?: number }> {
    return this.read('pskOf', async (st) => {
      const [r] = await all(st.pskOf, [id]);
      const out: { secret?: string; expires?: number } = {};
      if (typeof r?.secret === 'string') out.secret = r.secret;
      if (typeof r?.expires === 'number') out.expires = r.expires;
      return out;
    });
  }

  /** The device record of `id`, if any. */
  getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.getOne('getDevice', (st) => st.getDevice, id, deviceFromRow);
  }

  /** The pending request of `id`, if any. */
  getPending(id: string): Promise<PendingRecord | undefined> {
    return this.getOne('getPending', (st) => st.getPending, id, pendingFromRow);
  }

  /** The revocation of `id`, if any. */
  getRevocation(id: string): Promise<Revocation | undefined> {
    return this.getOne('getRevocation', (st) => st.getRevocation, id, revocationFromRow);
  }

  private getOne<T>(op: string, pick: (st: ReadStatements) => Statement, id: string, map: (r: Row) => T): Promise<T | undefined> {
    return this.read(op, async (st) => {
      const [r] = await all(pick(st), [id]);
      return r === undefined ? undefined : map(r);
    });
  }

  /** Allowlist entries by id (keyset pagination; `limit` default 100, clamped to 1..1000). */
  listAllow(opts?: ListOptions): Promise<Page<AllowEntry>> {
    return this.page('listAllow', (st) => st.listAllow, [], opts, allowFromRow);
  }

  /** Allowlist entries with a secret, their PSK fields only, by id (Store.listPsk). */
  listPsk(opts?: ListOptions): Promise<Page<PskEntry>> {
    return this.page('listPsk', (st) => st.listPsk, [], opts, pskFromRow);
  }

  /** Devices by id (keyset pagination; `limit` default 100, clamped to 1..1000). */
  listDevices(opts?: ListOptions): Promise<Page<DeviceRecord>> {
    return this.page('listDevices', (st) => st.listDevices, [], opts, deviceFromRow);
  }

  /** Pending requests by id, optionally only those with `status` (keyset pagination). */
  listPending(opts?: ListOptions & { status?: PendingStatus }): Promise<Page<PendingRecord>> {
    if (opts?.status !== undefined) {
      return this.page('listPending', (st) => st.listPendingByStatus, [opts.status], opts, pendingFromRow);
    }
    return this.page('listPending', (st) => st.listPending, [], opts, pendingFromRow);
  }

  /** Revocations by id (keyset pagination; `limit` default 100, clamped to 1..1000). */
  listRevocations(opts?: ListOptions): Promise<Page<Revocation>> {
    return this.page('listRevocations', (st) => st.listRevocations, [], opts, revocationFromRow);
  }

  private page<T extends { id: string }>(
    op: string,
    pick: (st: ReadStatements) => Statement,
    prefix: Param[],
    opts: ListOptions | undefined,
    map: (r: Row) => T,
  ): Promise<Page<T>> {
    const limit = clampLimit(opts?.limit);
    return this.read(op, async (st) => pageOf((await all(pick(st), [...prefix, opts?.after ?? '', limit + 1])).map(map), limit, (t) => t.id));
  }

  /** Flags by id, optionally only open or cleared ones (keyset pagination). */
  listFlags(opts?: ListOptions & { status?: 'open' | 'cleared' }): Promise<Page<FlagRecord>> {
    const pick = opts?.status === 'open' ? 'listFlagsOpen' : opts?.status === 'cleared' ? 'listFlagsCleared' : 'listFlags';
    return this.page('listFlags', (st) => st[pick], [], opts, flagFromRow);
  }

  /** The flag `id`, if any. */
  getFlag(id: string): Promise<FlagRecord | undefined> {
    return this.getOne('getFlag', (st) => st.getFlag, id, flagFromRow);
  }

  /** The admin-API token `jti`, if recorded. */
  getAdminToken(jti: string): Promise<AdminTokenRecord | undefined> {
    return this.getOne('getAdminToken', (st) => st.getAdminToken, jti, adminTokenFromRow);
  }

  /** Admin-API tokens by jti (keyset pagination; `limit` clamped to 1..1000). */
  listAdminTokens(opts: { after?: string | undefined; limit: number }): Promise<Page<AdminTokenRecord>> {
    const limit = clampLimit(opts.limit);
    return this.read('listAdminTokens', async (st) =>
      pageOf((await all(st.listAdminTokens, [opts.after ?? '', limit + 1])).map(adminTokenFromRow), limit, (t) => t.jti),
    );
  }

  /** IDs other than `exceptId` whose device or pending request holds `mac`, at most `limit`. */
  macPeers(mac: Uint8Array, exceptId: string, limit: number): Promise<string[]> {
    return this.read('macPeers', async (st) => (await all(st.macPeers, [blob(mac), exceptId, clampLimit(limit)])).map((r) => r.id as string));
  }

  /** Waiting requests (status `pending`), from the counter the triggers of migration 2 keep. */
  pendingWaiting(): Promise<number> {
    return this.read('pendingWaiting', async (st) => Number((await all(st.pendingWaiting, []))[0]?.n ?? 0));
  }

  /** Token keys, newest first (`created_at` descending, then kid). */
  listKeys(): Promise<TokenKeyRecord[]> {
    return this.read('listKeys', async (st) => (await all(st.listKeys, [])).map(keyFromRow));
  }

  /** The value of setting `name`, if set. */
  getSetting(name: string): Promise<string | undefined> {
    return this.read('getSetting', async (st) => {
      const [r] = await all(st.getSetting, [name]);
      return r === undefined ? undefined : (r.value as string);
    });
  }

  /** Every setting, by name. */
  listSettings(): Promise<Array<{ name: string; value: string }>> {
    return this.read('listSettings', async (st) => (await all(st.listSettings, [])).map((r) => ({ name: r.name as string, value: r.value as string })));
  }

  /** Events with seq > `afterSeq`, oldest first; `limit` is clamped to 1..1000. */
  listEvents(afterSeq: number, limit: number): Promise<EventRecord[]> {
    const after = Number.isFinite(afterSeq) ? Math.trunc(afterSeq) : 0;
    return this.read('listEvents', async (st) => (await all(st.listEvents, [after, clampLimit(limit)])).map(eventFromRow));
  }

  /** Row counts per table (full counts: meant for health output and tests, not a hot path). */
  counts(): Promise<Record<StoreTable, number>> {
    return this.read('counts', async (st) => {
      const [r] = (await all(st.counts, [])) as [Row];
      return r as Record<StoreTable, number>; // one integer column per table, named as StoreTable
    });
  }

  /**
   * The settings that back the durability promise and the schema version, as the writer connection
   * reports them (for `diag` output and tests).
   */
  async diagnostics(): Promise<SqliteDiagnostics> {
    if (this.closing) throw closedError();
    try {
      const [j, s, f, b, v, m] = await Promise.all([
        queryRow(this.db, 'PRAGMA journal_mode'),
        queryRow(this.db, 'PRAGMA synchronous'),
        queryRow(this.db, 'PRAGMA foreign_keys'),
        queryRow(this.db, 'PRAGMA busy_timeout'),
        queryRow(this.db, 'SELECT sqlite_version() AS v'),
        queryRow(this.db, 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations'),
      ]);
      return {
        journalMode: String(j.journal_mode),
        synchronous: (['off', 'normal', 'full', 'extra'] as const)[s.synchronous as number] ?? String(s.synchronous),
        foreignKeys: f.foreign_keys === 1,
        busyTimeoutMs: Number(b.timeout ?? b.busy_timeout),
        sqliteVersion: String(v.v),
        schemaVersion: m.v as number,
      };
    } catch (e) {
      throw toProvError(e, 'diagnostics');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /**
   * Commits every `apply` call already made (their promises settle as usual), waits for running
   * reads, finalizes the statements and closes the connections. Later calls reject with
   * `internal` ("the SqliteStore is closed"); calling `close` again returns the same promise.
   */
  // -------------------------------------------------------------------------------------------
  // Other processes' commits

  /**
   * Calls `fn('unknown')` after another connection to the same database file has committed — another
   * process, such as the `idprov` CLI importing an allowlist or minting a token while the server runs.
   * SQLite does not notify, so this looks every `everyMs` at `PRAGMA data_version` on the writer
   * connection, which changes only for other connections' commits (this store's own go through that
   * connection; its readers never write). `':memory:'` databases have no other connection: never
   * called. Resolves to a function that stops looking (`close` stops it too).
   */
  async onForeignChange(fn: (kinds: 'unknown') => void, everyMs = FOREIGN_POLL_MS): Promise<() => void> {
    if (this.gate.shared || this.closing) return () => undefined;
    const version = async (): Promise<number | undefined> => {
      try {
        return Number((await queryRow(this.db, 'PRAGMA data_version'))['data_version']);
      } catch (e) {
        if (!this.closing) this.log?.warn({ err: (e as Error).message }, 'store: reading PRAGMA data_version failed');
        return undefined;
      }
    };
    let last = await version();
    let busy = false;
    const timer = setInterval(() => {
      if (busy || this.closing) return;
      busy = true;
      void version().then((v) => {
        busy = false;
        if (v === undefined || this.closing) return;
        if (last !== undefined && v !== last) fn('unknown');
        last = v;
      });
    }, everyMs);
    timer.unref();
    const stop = (): void => {
      clearInterval(timer);
      this.watches.delete(stop);
    };
    this.watches.add(stop);
    return stop;
  }

  /**
   * Runs one round of the WAL checkpointer now, as its timer does (see `checkpointer.ts`); nothing
   * for `':memory:'`. For tests, which cannot wait for a timer.
   * @internal
   */
  checkpointRound(): Promise<void> {
    return this.checkpointer?.run() ?? Promise.resolve();
  }

  close(): Promise<void> {
    for (const stop of [...this.watches]) stop();
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    await this.checkpointer?.stop();
    await this.writer.drain();
    await this.gate.drained();
    const statements = Object.values(this.w);
    for (const r of this.readers) statements.push(...Object.values(r.st));
    await Promise.all(statements.map(finalize));
    // The writer last: closing the last connection checkpoints the WAL and removes it.
    const dbs = new Set<Database>([...this.readers.map((r) => r.db), ...(this.checkpointDb ? [this.checkpointDb] : []), this.db]);
    for (const db of dbs) {
      try {
        await closeDatabase(db);
      } catch (e) {
        throw toProvError(e, 'close');
      }
    }
    this.log?.debug('store closed');
  }
}
