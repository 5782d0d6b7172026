/**
 * Size: over 700 lines because schema, helpers, rows, statements, the writer and the readers are one
 * file, marked by its banners; issue #15 splits it along them.
 *
 * The SQLite implementation of the {@link Store} seam (docs/architecture.md "store"), on the `sqlite3` npm
 * package (callback API, wrapped in small promise helpers below).
 *
 * Connections: one **writer** connection owns every write transaction; file databases also get
 * **reader** connections (`PRAGMA query_only`). In WAL mode a reader sees exactly the transactions
 * committed before its statement started, so reads never observe a group that is still in flight
 * (or that is later rolled back), and they do not wait behind the writer's fsync. `':memory:'`
 * has a single connection; there a small gate keeps reads out while a write transaction is open.
 *
 * Writes: {@link SqliteStore.apply} queues the call; one flush at a time runs every queued call in
 * a single `BEGIN IMMEDIATE … COMMIT` (group commit). A call whose mutation fails is rolled back and
 * rejected alone while the others commit (statement atomicity, or a SAVEPOINT per call when a
 * call fails half-way; see `runTransaction`). A call's promise settles only after the COMMIT (or
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
import { dirname } from 'node:path';
import sqlite3 from 'sqlite3';
import type { Database, RunResult, Statement } from 'sqlite3';
import type {
  AdminTokenRecord,
  AdminTokenRole,
  AllowEntry,
  ClientType,
  DeviceRecord,
  EventRecord,
  FlagRecord,
  PendingRecord,
  PendingStatus,
  ProvisionedVia,
  Revocation,
  SubjectRecords,
  TokenKeyRecord,
} from '../domain.ts';
import { ProvError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ListOptions, Mutation, Page, Store, StoreTable } from './store.ts';

// ---------------------------------------------------------------------------------------------
// Schema

/**
 * Ordered schema migrations: element `i` is schema version `i + 1`. Each runs in its own
 * transaction and is recorded in `schema_migrations`; opening a database applies only the versions
 * it has not recorded yet. Append new steps, never edit a released one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: initial schema. STRICT tables make SQLite reject a value of the wrong type (a float time, a
  // string where a blob belongs) instead of storing it; WITHOUT ROWID keeps each id-keyed table a
  // single b-tree.
  `
  CREATE TABLE allowlist (
    id          TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk          BLOB,
    mac         BLOB,
    secret      TEXT,
    type        INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    expires     INTEGER,
    created_at  INTEGER NOT NULL,
    consumed_at INTEGER,
    CHECK (pk IS NOT NULL OR mac IS NOT NULL OR secret IS NOT NULL)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE devices (
    id             TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk             BLOB    NOT NULL,
    mac            BLOB,
    type           INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    via            TEXT    NOT NULL CHECK (via IN ('allowlist', 'admin', 'reprovision')),
    provisioned_at INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    source         TEXT,
    last_cti       TEXT,
    token_exp      INTEGER
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE pending (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    pk         BLOB    NOT NULL,
    mac        BLOB,
    type       INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
    source     TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 0),
    status     TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_at INTEGER,
    decided_by TEXT
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX pending_by_status ON pending (status, id);

  CREATE TABLE revocations (
    id     TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    at     INTEGER NOT NULL,
    by     TEXT    NOT NULL,
    reason TEXT
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE token_keys (
    kid        TEXT    NOT NULL PRIMARY KEY CHECK (length(kid) > 0),
    public     BLOB    NOT NULL,
    private    BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    device_id TEXT,
    actor     TEXT    NOT NULL,
    source    TEXT,
    detail    TEXT CHECK (detail IS NULL OR json_valid(detail))
  ) STRICT;
  CREATE INDEX events_by_device ON events (device_id, seq);
  `,
  // 2: the security monitor (issue #6). MAC indexes for the duplicate-MAC check; an age index and a
  // trigger-kept counter so that capping the waiting requests costs O(rows removed), not a count of
  // the table per insert; the flags table (one open flag per kind and subject).
  `
  CREATE INDEX devices_by_mac ON devices (mac) WHERE mac IS NOT NULL;
  CREATE INDEX pending_by_mac ON pending (mac) WHERE mac IS NOT NULL;
  CREATE INDEX pending_by_age ON pending (status, last_seen, id);

  CREATE TABLE counters (
    name TEXT    NOT NULL PRIMARY KEY,
    n    INTEGER NOT NULL
  ) STRICT, WITHOUT ROWID;
  INSERT INTO counters (name, n) SELECT 'pending.waiting', count(*) FROM pending WHERE status = 'pending';
  CREATE TRIGGER pending_waiting_insert AFTER INSERT ON pending WHEN NEW.status = 'pending'
    BEGIN UPDATE counters SET n = n + 1 WHERE name = 'pending.waiting'; END;
  CREATE TRIGGER pending_waiting_delete AFTER DELETE ON pending WHEN OLD.status = 'pending'
    BEGIN UPDATE counters SET n = n - 1 WHERE name = 'pending.waiting'; END;
  CREATE TRIGGER pending_waiting_update AFTER UPDATE OF status ON pending WHEN OLD.status <> NEW.status
    BEGIN UPDATE counters SET n = n + (NEW.status = 'pending') - (OLD.status = 'pending') WHERE name = 'pending.waiting'; END;

  CREATE TABLE flags (
    id         TEXT    NOT NULL PRIMARY KEY CHECK (length(id) > 0),
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    device_ids TEXT    NOT NULL CHECK (json_valid(device_ids)),
    evidence   TEXT    NOT NULL CHECK (json_valid(evidence)),
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    count      INTEGER NOT NULL CHECK (count >= 1),
    cleared_at INTEGER,
    cleared_by TEXT
  ) STRICT, WITHOUT ROWID;
  CREATE UNIQUE INDEX flags_open ON flags (kind, subject) WHERE cleared_at IS NULL;
  CREATE INDEX flags_cleared ON flags (cleared_at) WHERE cleared_at IS NOT NULL;
  `,
  // 3: the admin-API token registry (issue 14): every issued token by its jti, for listing and revoking.
  `
  CREATE TABLE admin_tokens (
    jti            TEXT    NOT NULL PRIMARY KEY CHECK (length(jti) > 0),
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('admin', 'hub')),
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    revoked_by     TEXT,
    revoked_reason TEXT
  ) STRICT, WITHOUT ROWID;
  `,
];

// ---------------------------------------------------------------------------------------------
// Public types

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
   * Replaces {@link MIGRATIONS}. For tests of the migration runner only.
   * @internal
   */
  migrations?: readonly string[];
}

/** Counters of a {@link SqliteStore}, for health output and tests. */
export interface SqliteStoreStats {
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

/** Largest page a list returns. */
export const MAX_PAGE = 1000;
/** Page size when `limit` is absent. */
export const DEFAULT_PAGE = 100;

// ---------------------------------------------------------------------------------------------
// Promise helpers over the callback API

type Row = Record<string, unknown>;
type Param = string | number | Buffer | null;

function openDatabase(path: string): Promise<Database> {
  return new Promise((resolve, reject) => {
    const mode = sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE | sqlite3.OPEN_FULLMUTEX;
    const db: Database = new sqlite3.Database(path, mode, (err) => (err ? reject(err) : resolve(db)));
  });
}

function closeDatabase(db: Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

function execSql(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
}

function queryDb(db: Database, sql: string, params: Param[] = []): Promise<Row[]> {
  return new Promise((resolve, reject) =>
    db.all<Row>(sql, params, (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

function prepare(db: Database, sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const st: Statement = db.prepare(sql, (err) => (err ? reject(err) : resolve(st)));
  });
}

function run(st: Statement, params: Param[] = []): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    st.run(params, function (this: RunResult, err: Error | null) {
      if (err) reject(err);
      else resolve(this);
    });
  });
}

/**
 * Reads always use `all`, never `get`: node-sqlite3's `get` leaves the statement un-reset after a
 * row, which keeps the connection's read transaction — and so its snapshot — open until that
 * statement is used again; later reads on the connection would then miss newer commits.
 */
function all(st: Statement, params: Param[]): Promise<Row[]> {
  return new Promise((resolve, reject) =>
    st.all<Row>(params, (err, rows) => (err ? reject(err) : resolve(rows))),
  );
}

function finalize(st: Statement): Promise<void> {
  return new Promise((resolve) => st.finalize(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// Value mapping

function blob(v: Uint8Array | undefined): Buffer | null {
  if (v === undefined || v === null) return null;
  return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function hex(v: Uint8Array | undefined): string | null {
  return v === undefined || v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
}

function opt<T extends string | number>(v: T | undefined): T | null {
  return v === undefined ? null : v;
}

/** Blobs come back as Buffers; hand out plain Uint8Array views (the domain type) over them. */
function bytes(v: unknown): Uint8Array {
  const b = v as Buffer;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

const ALLOW_COLS = ['id', 'pk', 'mac', 'secret', 'type', 'expires', 'created_at', 'consumed_at'] as const;
const DEVICE_COLS = [
  'id', 'pk', 'mac', 'type', 'via', 'provisioned_at', 'last_seen', 'source', 'last_cti', 'token_exp',
] as const;
const PENDING_COLS = [
  'id', 'pk', 'mac', 'type', 'source', 'first_seen', 'last_seen', 'count', 'status', 'decided_at', 'decided_by',
] as const;
const REVOCATION_COLS = ['id', 'at', 'by', 'reason'] as const;

/**
 * Reads of the four subject tables project their columns onto shared positional slots (b = blob,
 * n = integer, s = text), so that {@link READ_SQL.loadSubject} can fetch all four as one
 * `UNION ALL` of at most four narrow rows — one statement, hence one consistent snapshot. It
 * measured faster than a LEFT JOIN of all 33 columns (node-sqlite3 pays per column converted) and
 * than four separate gets (one thread-pool round trip each). The same mappers serve plain reads.
 */
const SLOTS = ['b1', 'b2', 'n1', 'n2', 'n3', 'n4', 'n5', 's1', 's2', 's3'] as const;
type Slot = (typeof SLOTS)[number];
const PROJECTION: Readonly<Record<'allow' | 'device' | 'pending' | 'revocation', Partial<Record<Slot, string>>>> = {
  allow: { b1: 'pk', b2: 'mac', n1: 'type', n2: 'expires', n3: 'created_at', n4: 'consumed_at', s1: 'secret' },
  device: {
    b1: 'pk', b2: 'mac', n1: 'type', n2: 'provisioned_at', n3: 'last_seen', n4: 'token_exp',
    s1: 'via', s2: 'source', s3: 'last_cti',
  },
  pending: {
    b1: 'pk', b2: 'mac', n1: 'type', n2: 'first_seen', n3: 'last_seen', n4: 'count', n5: 'decided_at',
    s1: 'status', s2: 'source', s3: 'decided_by',
  },
  revocation: { n1: 'at', s1: 'by', s2: 'reason' },
};

/** `col AS slot, …`; with `padded`, every slot appears (NULL when unused), as UNION ALL needs. */
function project(kind: keyof typeof PROJECTION, padded: boolean): string {
  const p = PROJECTION[kind];
  return SLOTS.filter((slot) => padded || p[slot] !== undefined)
    .map((slot) => `${p[slot] ?? 'NULL'} AS ${slot}`)
    .join(', ');
}

function allowFromRow(r: Row, id: string): AllowEntry {
  const e: AllowEntry = { id, type: r.n1 as ClientType, createdAt: r.n3 as number };
  if (r.b1 !== null) e.pk = bytes(r.b1);
  if (r.b2 !== null) e.mac = bytes(r.b2);
  if (r.s1 !== null) e.secret = r.s1 as string;
  if (r.n2 !== null) e.expires = r.n2 as number;
  if (r.n4 !== null) e.consumedAt = r.n4 as number;
  return e;
}

function deviceFromRow(r: Row, id: string): DeviceRecord {
  const d: DeviceRecord = {
    id,
    pk: bytes(r.b1),
    type: r.n1 as ClientType,
    via: r.s1 as ProvisionedVia,
    provisionedAt: r.n2 as number,
    lastSeen: r.n3 as number,
  };
  if (r.b2 !== null) d.mac = bytes(r.b2);
  if (r.s2 !== null) d.source = r.s2 as string;
  if (r.s3 !== null) d.lastCti = r.s3 as string;
  if (r.n4 !== null) d.tokenExp = r.n4 as number;
  return d;
}

function pendingFromRow(r: Row, id: string): PendingRecord {
  const p: PendingRecord = {
    id,
    pk: bytes(r.b1),
    type: r.n1 as ClientType,
    source: r.s2 as string,
    firstSeen: r.n2 as number,
    lastSeen: r.n3 as number,
    count: r.n4 as number,
    status: r.s1 as PendingStatus,
  };
  if (r.b2 !== null) p.mac = bytes(r.b2);
  if (r.n5 !== null) p.decidedAt = r.n5 as number;
  if (r.s3 !== null) p.decidedBy = r.s3 as string;
  return p;
}

function revocationFromRow(r: Row, id: string): Revocation {
  const v: Revocation = { id, at: r.n1 as number, by: r.s1 as string };
  if (r.s2 !== null) v.reason = r.s2 as string;
  return v;
}

function keyFromRow(r: Row): TokenKeyRecord {
  const k: TokenKeyRecord = {
    kid: r.kid as string,
    publicKey: bytes(r.public),
    privateKey: bytes(r.private),
    createdAt: r.created_at as number,
  };
  if (r.retired_at !== null) k.retiredAt = r.retired_at as number;
  return k;
}

function eventFromRow(r: Row): EventRecord {
  const e: EventRecord = { seq: r.seq as number, at: r.at as number, kind: r.kind as string, actor: r.actor as string };
  if (r.device_id !== null) e.deviceId = r.device_id as string;
  if (r.source !== null) e.source = r.source as string;
  if (r.detail !== null) e.detail = JSON.parse(r.detail as string) as Record<string, unknown>;
  return e;
}

const FLAG_COLS = [
  'id', 'kind', 'subject', 'device_ids', 'evidence', 'first_seen', 'last_seen', 'count', 'cleared_at', 'cleared_by',
] as const;

function flagFromRow(r: Row): FlagRecord {
  const f: FlagRecord = {
    id: r.id as string,
    kind: r.kind as string,
    subject: r.subject as string,
    deviceIds: JSON.parse(r.device_ids as string) as string[],
    evidence: JSON.parse(r.evidence as string) as Record<string, string>,
    firstSeen: r.first_seen as number,
    lastSeen: r.last_seen as number,
    count: r.count as number,
  };
  if (r.cleared_at !== null) f.clearedAt = r.cleared_at as number;
  if (r.cleared_by !== null) f.clearedBy = r.cleared_by as string;
  return f;
}

const ADMIN_TOKEN_COLS = ['jti', 'name', 'role', 'issued_at', 'expires_at', 'revoked_at', 'revoked_by', 'revoked_reason'] as const;

function adminTokenFromRow(r: Row): AdminTokenRecord {
  return {
    jti: r.jti as string,
    name: r.name as string,
    role: r.role as AdminTokenRole,
    issuedAt: r.issued_at as number,
    expiresAt: (r.expires_at as number | null) ?? null,
    revokedAt: (r.revoked_at as number | null) ?? null,
    revokedBy: (r.revoked_by as string | null) ?? null,
    revokedReason: (r.revoked_reason as string | null) ?? null,
  };
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE;
  return Math.min(MAX_PAGE, Math.max(1, Math.trunc(limit)));
}

// ---------------------------------------------------------------------------------------------
// Errors

interface SqliteError {
  errno?: number;
  code?: string;
  message?: string;
}

/** Marks a failure confined to one `apply` call (its statements rolled back, the transaction intact). */
function isCallLocal(e: unknown): boolean {
  if (e instanceof ProvError) return true;
  const errno = (e as SqliteError | null)?.errno;
  // No errno: a JS error raised before the statement ran (bad value, unknown kind).
  // CONSTRAINT / MISMATCH / RANGE / TOOBIG fail one statement and leave the transaction open.
  return (
    errno === undefined ||
    errno === sqlite3.CONSTRAINT ||
    errno === sqlite3.MISMATCH ||
    errno === sqlite3.RANGE ||
    errno === sqlite3.TOOBIG
  );
}

/**
 * Wraps a failure in a {@link ProvError}: a UNIQUE / PRIMARY KEY / FOREIGN KEY violation becomes
 * `conflict`; everything else (including CHECK / NOT NULL / datatype violations, which mean the
 * caller built an invalid record) becomes `internal`.
 */
function toProvError(e: unknown, op: string): ProvError {
  if (e instanceof ProvError) return e;
  const err = (e ?? {}) as SqliteError;
  const message = err.message ?? String(e);
  const detail: Record<string, unknown> = { op };
  if (err.code !== undefined) detail.sqlite = err.code;
  if (err.errno === sqlite3.CONSTRAINT && /UNIQUE|PRIMARY KEY|FOREIGN KEY/.test(message)) {
    return new ProvError('conflict', `store ${op}: ${message}`, detail);
  }
  return new ProvError('internal', `store ${op}: ${message}`, detail);
}

function closedError(): ProvError {
  return new ProvError('internal', 'the SqliteStore is closed');
}

// ---------------------------------------------------------------------------------------------
// Prepared statements

/**
 * Page cache of the writer connection, KiB. Small on purpose: a provisioning touches a few B-tree
 * pages (allowlist leaf, device and event appends) that the OS page cache serves anyway, while a
 * large cache fills as the event log grows and, with allocator fragmentation around it, showed as
 * steady RSS growth over a soak (docs/benchmarks.md, scenario 8). A bulk import raises it to
 * {@link BULK_CACHE_KIB} for its transaction.
 */
const WRITER_CACHE_KIB = 2048;
const BULK_CACHE_KIB = 16384;

/**
 * Prepared copies of every read statement per reader connection. node-sqlite3 runs one execution
 * of a Statement at a time and starts the next queued one only from the main thread, after the
 * previous one's result was delivered there: with one copy, reads of one connection advance one
 * per event-loop turn, and when a turn is long (a burst of signature checks) they queue — measured
 * as a p90 of tens of ms for a 0.2 ms lookup at 600 provisionings/s. With several copies, every
 * read issued in a turn is in the thread pool at once (SQLite still runs them one at a time per
 * connection, each in microseconds).
 */
const READ_STATEMENT_COPIES = 4;

/**
 * Rows per statement of a bulk allowlist upsert. A run of `allow.upsert` mutations is sent as one
 * JSON array per chunk and unpacked by SQLite (`jsonb_each`), which measured cheaper in CPU than
 * binding 8 parameters per row through node-sqlite3, and blocks the event loop ~1 ms per chunk.
 */
const ALLOW_JSON_CHUNK = 1000;
/** Runs shorter than this use the one-row statement per mutation. */
const ALLOW_JSON_MIN = 4;
/** Most waiting requests one `pending.expire` deletes (the periodic sweep comes back for the rest). */
const PRUNE_BATCH = 50_000;

/** `ON CONFLICT(key) DO UPDATE SET` every other column to the new row's value. */
function onConflictReplace(key: string, columns: readonly string[]): string {
  return `ON CONFLICT(${key}) DO UPDATE SET ` + columns.filter((c) => c !== key).map((c) => `${c} = excluded.${c}`).join(', ');
}

function upsertSql(table: string, key: string, columns: readonly string[]): string {
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) ${onConflictReplace(key, columns)}`;
}

/**
 * A record's column values in {@link DEVICE_COLS} / {@link PENDING_COLS} order, and an event's, with
 * byte columns encoded by `bytes`: bound as blobs by the one-row statements, hex strings (unhexed by
 * SQLite) in the JSON of the one-statement group path.
 */
function deviceRow(d: DeviceRecord, bytes: (v: Uint8Array | undefined) => Param): Param[] {
  return [d.id, bytes(d.pk), bytes(d.mac), d.type, d.via, d.provisionedAt, d.lastSeen, opt(d.source), opt(d.lastCti), opt(d.tokenExp)];
}

function pendingRow(p: PendingRecord, bytes: (v: Uint8Array | undefined) => Param): Param[] {
  return [p.id, bytes(p.pk), bytes(p.mac), p.type, p.source, p.firstSeen, p.lastSeen, p.count, p.status, opt(p.decidedAt), opt(p.decidedBy)];
}

function eventRow(e: EventRecord): Param[] {
  return [e.at, e.kind, opt(e.deviceId), e.actor, opt(e.source), e.detail === undefined ? null : JSON.stringify(e.detail)];
}

/**
 * Re-importing an entry keeps its consumption when its factors (pk, mac, secret) are unchanged, so an
 * accidental re-upload of the same file does not re-arm spent pre-approvals; an entry with new
 * factors (e.g. an admin re-keying a device) is usable again. To re-arm an unchanged entry, delete it
 * and import it again.
 */
const ALLOW_UPDATE =
  'ON CONFLICT(id) DO UPDATE SET ' +
  ALLOW_COLS.filter((c) => c !== 'id' && c !== 'consumed_at')
    .map((c) => `${c} = excluded.${c}`)
    .concat(
      'consumed_at = CASE WHEN excluded.consumed_at IS NOT NULL THEN excluded.consumed_at ' +
        'WHEN allowlist.pk IS excluded.pk AND allowlist.mac IS excluded.mac AND allowlist.secret IS excluded.secret THEN allowlist.consumed_at ' +
        'ELSE NULL END',
    )
    .join(', ');

/**
 * The group-commit fast path: one INSERT into this TEMP view writes a whole group of the common
 * mutations (a provisioning's device row, allowlist consumption, waiting-request row, events) in ONE
 * statement — one thread-pool round trip and one implicit (autocommit) transaction — instead of
 * `BEGIN`, one statement per mutation and `COMMIT`. Each column is a JSON array (or NULL) of one
 * kind's rows, unpacked by the INSTEAD OF trigger; see {@link batchOf} for the element layouts and
 * for which groups qualify. The statement is atomic: when any part fails (an `allow.consume` of a
 * missing or consumed entry RAISEs, or a CHECK fails), SQLite undoes all of it and the caller runs
 * the group through the general path, which finds the failing call. TEMP objects live in this
 * connection only and are not part of the schema (no migration).
 */
const BATCH_SCHEMA = `
  CREATE TEMP VIEW apply_batch (consumes, devices, pending_deletes, pendings, pending_seen, events) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL;
  CREATE TEMP TRIGGER apply_batch_insert INSTEAD OF INSERT ON apply_batch BEGIN
    SELECT RAISE(ABORT, 'idprov batch: allowlist entry is missing or already consumed')
      WHERE EXISTS (SELECT 1 FROM json_each(NEW.consumes) j LEFT JOIN allowlist a ON a.id = j.value->>0
                    WHERE a.id IS NULL OR a.consumed_at IS NOT NULL);
    UPDATE allowlist SET consumed_at = j.value->>1 FROM json_each(NEW.consumes) j WHERE allowlist.id = j.value->>0;
    INSERT INTO devices (${DEVICE_COLS.join(', ')})
      SELECT value->>0, unhex(value->>1), unhex(value->>2), value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9
      FROM json_each(NEW.devices) WHERE true
      ${onConflictReplace('id', DEVICE_COLS)};
    DELETE FROM pending WHERE id IN (SELECT value FROM json_each(NEW.pending_deletes));
    INSERT INTO pending (${PENDING_COLS.join(', ')})
      SELECT value->>0, unhex(value->>1), unhex(value->>2), value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10
      FROM json_each(NEW.pendings) WHERE true
      ${onConflictReplace('id', PENDING_COLS)};
    UPDATE pending SET last_seen = j.value->>1, count = j.value->>2, source = j.value->>3
      FROM json_each(NEW.pending_seen) j WHERE pending.id = j.value->>0;
    INSERT INTO events (at, kind, device_id, actor, source, detail)
      SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 FROM json_each(NEW.events) ORDER BY key;
  END;
`;

/**
 * The parameters of {@link WRITE_SQL.applyBatch} for `group`, or undefined when the group cannot take
 * the fast path: a mutation kind other than the six below, or one row (allowlist entry, device,
 * waiting request) touched twice — the trigger applies kinds in a fixed order, which is only the
 * calls' order when no two mutations touch the same row. Events keep their order (json_each key).
 */
function batchOf(group: readonly QueuedCall[]): Param[] | undefined {
  const consumes: unknown[] = [];
  const devices: unknown[] = [];
  const pendingDeletes: string[] = [];
  const pendings: unknown[] = [];
  const seen: unknown[] = [];
  const events: unknown[] = [];
  const touched = new Set<string>();
  const touch = (key: string): boolean => touched.size !== touched.add(key).size;
  for (const call of group) {
    for (const m of call.mutations) {
      switch (m.kind) {
        case 'allow.consume':
          if (!touch(`a${m.id}`)) return undefined;
          consumes.push([m.id, m.at]);
          break;
        case 'device.upsert':
          if (!touch(`d${m.device.id}`)) return undefined;
          devices.push(deviceRow(m.device, hex));
          break;
        case 'pending.delete':
          if (!touch(`p${m.id}`)) return undefined;
          pendingDeletes.push(m.id);
          break;
        case 'pending.upsert':
          if (!touch(`p${m.pending.id}`)) return undefined;
          pendings.push(pendingRow(m.pending, hex));
          break;
        case 'pending.seen':
          if (!touch(`p${m.id}`)) return undefined;
          seen.push([m.id, m.lastSeen, m.count, m.source]);
          break;
        case 'event':
          events.push(eventRow(m.event));
          break;
        case 'nonce.use':
          break; // nothing to write here (see applyOne)
        default:
          return undefined;
      }
    }
  }
  const json = (a: unknown[]): string | null => (a.length > 0 ? JSON.stringify(a) : null);
  return [json(consumes), json(devices), json(pendingDeletes), json(pendings), json(seen), json(events)];
}

const WRITE_SQL = {
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  savepoint: 'SAVEPOINT apply_call',
  release: 'RELEASE apply_call',
  rollbackTo: 'ROLLBACK TO apply_call',
  applyBatch: 'INSERT INTO apply_batch (consumes, devices, pending_deletes, pendings, pending_seen, events) VALUES (?, ?, ?, ?, ?, ?)',
  pendingSeen: 'UPDATE pending SET last_seen = ?, count = ?, source = ? WHERE id = ?',
  allowUpsert: `INSERT INTO allowlist (${ALLOW_COLS.join(', ')}) VALUES (${ALLOW_COLS.map(() => '?').join(', ')}) ${ALLOW_UPDATE}`,
  // Elements are [id, hex pk, hex mac, secret, type, expires, created_at, consumed_at]; `WHERE true`
  // keeps the parser from reading ON CONFLICT as a join constraint.
  allowUpsertJson:
    `INSERT INTO allowlist (${ALLOW_COLS.join(', ')}) ` +
    'SELECT value->>0, unhex(value->>1), unhex(value->>2), value->>3, value->>4, value->>5, value->>6, value->>7 ' +
    `FROM jsonb_each(?) WHERE true ${ALLOW_UPDATE}`,
  allowDelete: 'DELETE FROM allowlist WHERE id = ?',
  allowConsume: 'UPDATE allowlist SET consumed_at = ? WHERE id = ? AND consumed_at IS NULL',
  deviceUpsert: upsertSql('devices', 'id', DEVICE_COLS),
  deviceDelete: 'DELETE FROM devices WHERE id = ?',
  pendingUpsert: upsertSql('pending', 'id', PENDING_COLS),
  pendingDelete: 'DELETE FROM pending WHERE id = ?',
  revocationPut: upsertSql('revocations', 'id', REVOCATION_COLS),
  revocationDelete: 'DELETE FROM revocations WHERE id = ?',
  keyPut: upsertSql('token_keys', 'kid', ['kid', 'public', 'private', 'created_at', 'retired_at']),
  settingPut: upsertSql('settings', 'name', ['name', 'value']),
  eventInsert: 'INSERT INTO events (at, kind, device_id, actor, source, detail) VALUES (?, ?, ?, ?, ?, ?)',
  flagPut: upsertSql('flags', 'id', FLAG_COLS),
  flagDelete: 'DELETE FROM flags WHERE id = ?',
  adminTokenPut: upsertSql('admin_tokens', 'jti', ADMIN_TOKEN_COLS),
  adminTokenRevoke: 'UPDATE admin_tokens SET revoked_at = ?, revoked_by = ?, revoked_reason = ? WHERE jti = ? AND revoked_at IS NULL',
  flagsTrim:
    'DELETE FROM flags WHERE id IN (SELECT id FROM flags WHERE cleared_at IS NOT NULL ORDER BY cleared_at, id ' +
    'LIMIT max(0, (SELECT count(*) FROM flags) - ?))',
  // The pending_by_age index walks the waiting requests least recently seen first; the counter makes
  // the excess known without counting the table.
  pendingTrim:
    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE status = 'pending' AND id <> ?1 " +
    "ORDER BY last_seen, id LIMIT max(0, (SELECT n FROM counters WHERE name = 'pending.waiting') - ?2))",
  pendingExpire:
    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE status = 'pending' AND last_seen < ? ORDER BY last_seen LIMIT ?)",
  // Events are appended in time order, so the old ones are a prefix by seq: both deletes walk the
  // rowid b-tree from its start and touch only the rows they delete.
  eventsPruneAge:
    'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq < coalesce((SELECT seq FROM events WHERE at >= ?1 ORDER BY seq LIMIT 1), 9223372036854775807) ORDER BY seq LIMIT ?2)',
  eventsPruneCap:
    'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?1 ORDER BY seq LIMIT ?2)',
} as const;

const READ_SQL = {
  loadSubject:
    `SELECT 'a' AS t, ${project('allow', true)} FROM allowlist WHERE id = ?1 ` +
    `UNION ALL SELECT 'd', ${project('device', true)} FROM devices WHERE id = ?1 ` +
    `UNION ALL SELECT 'p', ${project('pending', true)} FROM pending WHERE id = ?1 ` +
    `UNION ALL SELECT 'r', ${project('revocation', true)} FROM revocations WHERE id = ?1`,
  getAllow: `SELECT id, ${project('allow', false)} FROM allowlist WHERE id = ?`,
  // Always exactly one row (NULLs for an unknown id): see Store.pskOf.
  pskOf: 'SELECT a.secret AS secret, a.expires AS expires FROM (SELECT ?1 AS id) AS q LEFT JOIN allowlist AS a ON a.id = q.id',
  getDevice: `SELECT id, ${project('device', false)} FROM devices WHERE id = ?`,
  getPending: `SELECT id, ${project('pending', false)} FROM pending WHERE id = ?`,
  getRevocation: `SELECT id, ${project('revocation', false)} FROM revocations WHERE id = ?`,
  // Keyset pagination: ids are never '' (CHECK), so `id > ''` is "from the start".
  listAllow: `SELECT id, ${project('allow', false)} FROM allowlist WHERE id > ? ORDER BY id LIMIT ?`,
  listDevices: `SELECT id, ${project('device', false)} FROM devices WHERE id > ? ORDER BY id LIMIT ?`,
  listPending: `SELECT id, ${project('pending', false)} FROM pending WHERE id > ? ORDER BY id LIMIT ?`,
  listPendingByStatus:
    `SELECT id, ${project('pending', false)} FROM pending WHERE status = ? AND id > ? ORDER BY id LIMIT ?`,
  listRevocations: `SELECT id, ${project('revocation', false)} FROM revocations WHERE id > ? ORDER BY id LIMIT ?`,
  listKeys: 'SELECT kid, public, private, created_at, retired_at FROM token_keys ORDER BY created_at DESC, kid',
  getSetting: 'SELECT value FROM settings WHERE name = ?',
  listSettings: 'SELECT name, value FROM settings ORDER BY name',
  listEvents:
    'SELECT seq, at, kind, device_id, actor, source, detail FROM events WHERE seq > ? ORDER BY seq LIMIT ?',
  counts:
    'SELECT (SELECT count(*) FROM allowlist) AS allowlist, (SELECT count(*) FROM devices) AS devices, ' +
    '(SELECT count(*) FROM pending) AS pending, (SELECT count(*) FROM revocations) AS revocations, ' +
    '(SELECT count(*) FROM token_keys) AS keys, (SELECT count(*) FROM events) AS events, ' +
    '(SELECT count(*) FROM flags) AS flags, (SELECT count(*) FROM admin_tokens) AS adminTokens',
  getAdminToken: `SELECT ${ADMIN_TOKEN_COLS.join(', ')} FROM admin_tokens WHERE jti = ?`,
  listAdminTokens: `SELECT ${ADMIN_TOKEN_COLS.join(', ')} FROM admin_tokens WHERE jti > ? ORDER BY jti LIMIT ?`,
  listFlags: `SELECT ${FLAG_COLS.join(', ')} FROM flags WHERE id > ? ORDER BY id LIMIT ?`,
  listFlagsOpen: `SELECT ${FLAG_COLS.join(', ')} FROM flags WHERE cleared_at IS NULL AND id > ? ORDER BY id LIMIT ?`,
  listFlagsCleared: `SELECT ${FLAG_COLS.join(', ')} FROM flags WHERE cleared_at IS NOT NULL AND id > ? ORDER BY id LIMIT ?`,
  getFlag: `SELECT ${FLAG_COLS.join(', ')} FROM flags WHERE id = ?`,
  macPeers:
    'SELECT id FROM devices WHERE mac = ?1 AND id <> ?2 UNION SELECT id FROM pending WHERE mac = ?1 AND id <> ?2 LIMIT ?3',
  pendingWaiting: "SELECT n FROM counters WHERE name = 'pending.waiting'",
} as const;

type WriteStatements = Record<keyof typeof WRITE_SQL, Statement>;
type ReadStatements = Record<keyof typeof READ_SQL, Statement>;

/** Prepares every statement of `sql`, also recording each in `sink` (to finalize them if open fails). */
async function prepareAll<K extends string>(
  db: Database,
  sql: Readonly<Record<K, string>>,
  sink: Statement[],
): Promise<Record<K, Statement>> {
  const out = {} as Record<K, Statement>;
  for (const name of Object.keys(sql) as K[]) {
    out[name] = await prepare(db, sql[name]);
    sink.push(out[name]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The store

interface QueuedCall {
  mutations: readonly Mutation[];
  resolve: () => void;
  reject: (e: ProvError) => void;
  error?: ProvError;
  /** A bulk allowlist import: runs alone, in its own transaction (see {@link SqliteStore.bulkUpsertAllow}). */
  bulk?: { source: AsyncIterable<string>; result: BulkResult };
}

/** What a bulk import wrote. */
export interface BulkResult {
  /** Entries upserted. */
  rows: number;
  /** Of those, ids that were not in the allowlist before. */
  added: number;
}

interface ReadConnection {
  db: Database;
  st: ReadStatements;
}

type AllowUpsert = Extract<Mutation, { kind: 'allow.upsert' }>;

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
  };

  private queue: QueuedCall[] = [];
  private flushing: Promise<void> | undefined;
  private cancelStart: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private nextReader = 0;
  // Gate of a shared (':memory:') connection: reads wait while a write transaction is open, a
  // transaction waits until running reads finish.
  private txOpen = false;
  private activeReads = 0;
  private gateWaiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];

  private constructor(
    private readonly writer: Database,
    private readonly w: WriteStatements,
    private readonly readers: readonly ReadConnection[],
    private readonly shared: boolean,
    private readonly delayMs: number,
    private readonly groupStatement: boolean,
    private readonly log: Logger | undefined,
  ) {}

  /**
   * Opens (creating when missing) the database at `path` — a file path, or `':memory:'` for tests —
   * applies pending {@link MIGRATIONS} and prepares every statement.
   *
   * For a file: the parent directory is created (mode 0700) when missing; the database file is
   * created with mode 0600 and it and its `-wal` / `-shm` files are chmod-ed to 0600, since it holds
   * token-signing keys and OOB secrets. Pragmas: `journal_mode=WAL`, `synchronous=FULL` (see the
   * module comment), `busy_timeout`, `foreign_keys=ON`.
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
        // Keep the WAL file from staying huge after a bulk import (it is truncated at checkpoints).
        await execSql(writer, 'PRAGMA journal_size_limit = 67108864');
      }
      await execSql(writer, `PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -${WRITER_CACHE_KIB}`);
      const applied = await migrate(writer, opts.migrations ?? MIGRATIONS, log);
      await execSql(writer, BATCH_SCHEMA);
      const w = await prepareAll(writer, WRITE_SQL, prepared);

      const readers: ReadConnection[] = [];
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
        for (const suffix of ['-wal', '-shm']) {
          await chmod(path + suffix, 0o600).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'ENOENT') throw e;
          });
        }
      }
      const store = new SqliteStore(writer, w, readers, memory, Math.max(0, opts.groupCommitMaxDelayMs ?? 0), opts.groupStatement ?? true, log);
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
  // Writes

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
   * Upserts every entry that `source` yields, in ONE transaction, then applies `after` (e.g. the
   * audit event) in it and commits: all or nothing. Batches are written as they arrive, so memory
   * stays bounded by the batch size whatever the number of entries. If `source` throws, the
   * transaction is rolled back and the promise rejects with that error. Other writes wait while it
   * runs (it holds the write transaction).
   */
  bulkUpsertAllow(source: AsyncIterable<string>, after: readonly Mutation[] = []): Promise<BulkResult> {
    if (this.closing) return Promise.reject(closedError());
    const result: BulkResult = { rows: 0, added: 0 };
    return new Promise<BulkResult>((resolve, reject) => {
      this.queue.push({ mutations: after, resolve: () => resolve(result), reject, bulk: { source, result } });
      if (this.flushing === undefined && this.cancelStart === undefined) {
        const t = setImmediate(() => {
          this.cancelStart = undefined;
          this.flushing = this.flushLoop();
        });
        this.cancelStart = () => clearImmediate(t);
      }
    });
  }

  private async runBulk(call: QueuedCall): Promise<void> {
    const { source, result } = call.bulk!;
    if (this.shared) {
      this.txOpen = true;
      while (this.activeReads > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
    }
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
      if (this.shared) {
        this.txOpen = false;
        const waiters = this.gateWaiters;
        this.gateWaiters = [];
        for (const wake of waiters) wake();
      }
    }
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const b = this.queue.findIndex((c) => c.bulk !== undefined);
        if (b === 0) {
          await this.runBulk(this.queue.shift()!);
          continue;
        }
        const group = b < 0 ? this.queue : this.queue.slice(0, b);
        this.queue = b < 0 ? [] : this.queue.slice(b);
        await this.commitGroup(group);
        // Let reads released from the gate start before the next group closes it again.
        if (this.shared) await new Promise((r) => setImmediate(r));
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
    if (this.shared) {
      this.txOpen = true; // new reads wait from now on
      while (this.activeReads > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
    }
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
        for (let i = 0; i < group.length; i++) {
          const call = group[i];
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
      if (this.shared) {
        this.txOpen = false;
        const waiters = this.gateWaiters;
        this.gateWaiters = [];
        for (const wake of waiters) wake();
      }
    }
  }

  /** Applies one call's mutations in order, counting the statements that succeeded in `progress`. */
  private async applyCall(ms: readonly Mutation[], progress: { statements: number }): Promise<void> {
    let i = 0;
    while (i < ms.length) {
      const m = ms[i];
      if (m.kind === 'allow.upsert') {
        let j = i + 1;
        while (j < ms.length && ms[j].kind === 'allow.upsert') j++;
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
        await this.applyOne(ms[i]);
        progress.statements++;
      }
      return;
    }
    const inflight: Promise<unknown>[] = [];
    try {
      for (let i = from; i < to; i += ALLOW_JSON_CHUNK) {
        const end = Math.min(to, i + ALLOW_JSON_CHUNK);
        const rows: unknown[] = new Array(end - i);
        for (let r = i; r < end; r++) {
          const e = ms[r].entry;
          rows[r - i] = [e.id, hex(e.pk), hex(e.mac), e.secret, e.type, e.expires, e.createdAt, e.consumedAt];
        }
        // JSON.stringify writes undefined array elements as null.
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
        await run(w.allowUpsert, [
          e.id, blob(e.pk), blob(e.mac), opt(e.secret), e.type, opt(e.expires), e.createdAt, opt(e.consumedAt),
        ]);
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
        await run(w.deviceUpsert, deviceRow(m.device, blob));
        return;
      case 'device.delete':
        await run(w.deviceDelete, [m.id]);
        return;
      case 'pending.upsert':
        await run(w.pendingUpsert, pendingRow(m.pending, blob));
        return;
      case 'pending.delete':
        await run(w.pendingDelete, [m.id]);
        return;
      case 'pending.seen':
        await run(w.pendingSeen, [m.lastSeen, m.count, m.source, m.id]);
        return;
      case 'revocation.put': {
        const v = m.revocation;
        await run(w.revocationPut, [v.id, v.at, v.by, opt(v.reason)]);
        return;
      }
      case 'revocation.delete':
        await run(w.revocationDelete, [m.id]);
        return;
      case 'key.put': {
        const k = m.key;
        await run(w.keyPut, [k.kid, blob(k.publicKey), blob(k.privateKey), k.createdAt, opt(k.retiredAt)]);
        return;
      }
      case 'setting.put':
        await run(w.settingPut, [m.name, m.value]);
        return;
      case 'event':
        await run(w.eventInsert, eventRow(m.event));
        return;
      case 'flag.put': {
        const f = m.flag;
        await run(w.flagPut, [
          f.id, f.kind, f.subject, JSON.stringify(f.deviceIds), JSON.stringify(f.evidence), f.firstSeen, f.lastSeen,
          f.count, opt(f.clearedAt), opt(f.clearedBy),
        ]);
        return;
      }
      case 'flag.delete':
        await run(w.flagDelete, [m.id]);
        return;
      case 'flags.trim':
        await run(w.flagsTrim, [m.max]);
        return;
      case 'admin-token.put': {
        const t = m.token;
        await run(w.adminTokenPut, [t.jti, t.name, t.role, t.issuedAt, t.expiresAt, t.revokedAt, t.revokedBy, t.revokedReason]);
        return;
      }
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

  // -------------------------------------------------------------------------------------------
  // Reads

  /** Runs `fn` on a reader connection (round robin), or behind the gate on a shared connection. */
  private async read<T>(op: string, fn: (st: ReadStatements) => Promise<T>): Promise<T> {
    if (this.closing) throw closedError();
    if (this.shared) {
      while (this.txOpen) await new Promise<void>((r) => this.gateWaiters.push(r));
    }
    const conn = this.readers[this.nextReader++ % this.readers.length];
    this.activeReads++;
    try {
      return await fn(conn.st);
    } catch (e) {
      throw toProvError(e, op);
    } finally {
      if (--this.activeReads === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const wake of waiters) wake();
      }
    }
  }

  /**
   * Allowlist entry, device, pending request and revocation of `id`, read by one statement (one
   * snapshot), so they are mutually consistent and include every `apply` that has resolved.
   */
  loadSubject(id: string): Promise<SubjectRecords> {
    return this.read('loadSubject', async (st) => {
      const out: SubjectRecords = {};
      for (const r of await all(st.loadSubject, [id])) {
        if (r.t === 'a') out.allow = allowFromRow(r, id);
        else if (r.t === 'd') out.device = deviceFromRow(r, id);
        else if (r.t === 'p') out.pending = pendingFromRow(r, id);
        else out.revocation = revocationFromRow(r, id);
      }
      return out;
    });
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

  private getOne<T>(
    op: string,
    pick: (st: ReadStatements) => Statement,
    id: string,
    map: (r: Row, id: string) => T,
  ): Promise<T | undefined> {
    return this.read(op, async (st) => {
      const [r] = await all(pick(st), [id]);
      return r === undefined ? undefined : map(r, id);
    });
  }

  /** Allowlist entries by id (keyset pagination; `limit` default 100, clamped to 1..1000). */
  listAllow(opts?: ListOptions): Promise<Page<AllowEntry>> {
    return this.page('listAllow', (st) => st.listAllow, [], opts, allowFromRow);
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
    map: (r: Row, id: string) => T,
  ): Promise<Page<T>> {
    const limit = clampLimit(opts?.limit);
    return this.read(op, async (st) => {
      const rows = await all(pick(st), [...prefix, opts?.after ?? '', limit + 1]);
      const items = rows.slice(0, limit).map((r) => map(r, r.id as string));
      return rows.length > limit ? { items, next: items[items.length - 1].id } : { items };
    });
  }

  /** Flags by id, optionally only open or cleared ones (keyset pagination). */
  listFlags(opts?: ListOptions & { status?: 'open' | 'cleared' }): Promise<Page<FlagRecord>> {
    const pick = opts?.status === 'open' ? 'listFlagsOpen' : opts?.status === 'cleared' ? 'listFlagsCleared' : 'listFlags';
    return this.page('listFlags', (st) => st[pick], [], opts, (r) => flagFromRow(r));
  }

  /** The flag `id`, if any. */
  getFlag(id: string): Promise<FlagRecord | undefined> {
    return this.read('getFlag', async (st) => {
      const [r] = await all(st.getFlag, [id]);
      return r === undefined ? undefined : flagFromRow(r);
    });
  }

  /** The admin-API token `jti`, if recorded. */
  getAdminToken(jti: string): Promise<AdminTokenRecord | undefined> {
    return this.read('getAdminToken', async (st) => {
      const [r] = await all(st.getAdminToken, [jti]);
      return r === undefined ? undefined : adminTokenFromRow(r);
    });
  }

  /** Admin-API tokens by jti (keyset pagination; `limit` clamped to 1..1000). */
  listAdminTokens(opts: { after?: string; limit: number }): Promise<Page<AdminTokenRecord>> {
    const limit = clampLimit(opts.limit);
    return this.read('listAdminTokens', async (st) => {
      const rows = await all(st.listAdminTokens, [opts.after ?? '', limit + 1]);
      const items = rows.slice(0, limit).map(adminTokenFromRow);
      return rows.length > limit ? { items, next: items[items.length - 1].jti } : { items };
    });
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
      const [r] = await all(st.counts, []);
      return {
        allowlist: r.allowlist as number,
        devices: r.devices as number,
        pending: r.pending as number,
        revocations: r.revocations as number,
        keys: r.keys as number,
        events: r.events as number,
        flags: r.flags as number,
        adminTokens: r.adminTokens as number,
      };
    });
  }

  /**
   * The settings that back the durability promise and the schema version, as the writer connection
   * reports them (for `diag` output and tests).
   */
  async diagnostics(): Promise<SqliteDiagnostics> {
    if (this.closing) throw closedError();
    try {
      const [[j], [s], [f], [b], [v], [m]] = await Promise.all([
        queryDb(this.writer, 'PRAGMA journal_mode'),
        queryDb(this.writer, 'PRAGMA synchronous'),
        queryDb(this.writer, 'PRAGMA foreign_keys'),
        queryDb(this.writer, 'PRAGMA busy_timeout'),
        queryDb(this.writer, 'SELECT sqlite_version() AS v'),
        queryDb(this.writer, 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations'),
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
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.cancelStart) {
      this.cancelStart();
      this.cancelStart = undefined;
      this.flushing = this.flushLoop();
    }
    while (this.flushing) await this.flushing;
    while (this.activeReads > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
    const statements = Object.values(this.w);
    for (const r of this.readers) statements.push(...Object.values(r.st));
    await Promise.all(statements.map(finalize));
    const dbs = new Set<Database>([...this.readers.map((r) => r.db), this.writer]);
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

/** Applies the migrations `db` has not recorded yet, each in its own transaction; returns how many. */
async function migrate(db: Database, migrations: readonly string[], log: Logger | undefined): Promise<number> {
  await execSql(
    db,
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT',
  );
  let applied = 0;
  for (let version = 1; version <= migrations.length; version++) {
    await execSql(db, 'BEGIN IMMEDIATE');
    try {
      // Read inside the write transaction: another process may be migrating the same file.
      const [r] = await queryDb(db, 'SELECT coalesce(max(version), 0) AS v FROM schema_migrations');
      const current = r.v as number;
      if (current > migrations.length) {
        throw new ProvError(
          'internal',
          `store open: database schema version ${current} is newer than this server knows (${migrations.length})`,
        );
      }
      if (current >= version) {
        await execSql(db, 'COMMIT');
        continue;
      }
      await execSql(db, migrations[version - 1]);
      await queryDb(db, 'INSERT INTO schema_migrations (version, applied_at) VALUES (?, unixepoch())', [version]);
      await execSql(db, 'COMMIT');
      applied++;
      log?.info({ version }, 'applied schema migration');
    } catch (e) {
      await execSql(db, 'ROLLBACK').catch(() => undefined);
      throw e instanceof ProvError ? e : toProvError(e, `migration ${version}`);
    }
  }
  return applied;
}
