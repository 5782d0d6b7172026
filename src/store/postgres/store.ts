/**
 * Size: over 700 lines because the writer (group commit with savepoints, deadlock re-runs), the
 * readers and the LISTEN loop still share one class; the split along those seams, shared with
 * store/sqlite.ts's, is issue #15's (store/<kind>/ writer, readers, rows).
 *
 * The PostgreSQL implementation of the {@link Store} seam (issue 16), on node-postgres (`pg`), for
 * several idprov instances sharing one database. SQLite stays the embedded default.
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
import pg from 'pg';
import type { PoolClient, QueryResult } from 'pg';
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
import { allowRow, type ListOptions, type Mutation, type Page, type Store, type StoreTable } from '../store.ts';
import {
  ADMIN_TOKEN_COLS,
  ALLOW_COLS,
  DEVICE_COLS,
  EVENT_COLS,
  FLAG_COLS,
  KEY_COLS,
  PENDING_COLS,
  REVOCATION_COLS,
  adminTokenFromRow,
  adminTokenParams,
  allowFromRow,
  allowParams,
  blob,
  deviceFromRow,
  deviceParams,
  eventFromRow,
  eventParams,
  flagFromRow,
  flagParams,
  keyFromRow,
  opt,
  pendingFromRow,
  pendingParams,
  revocationFromRow,
  type Param,
  type Row,
} from './rows.ts';
import { PG_MIGRATIONS, migratePostgres } from './schema.ts';

/** Largest page a list returns, and the default (as the SQLite store). */
const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;
/** Most waiting requests one `pending.expire` deletes. */
const PRUNE_BATCH = 50_000;
/** Rows per JSON statement of a run of `allow.upsert`s, and the shortest run sent that way. */
const ALLOW_JSON_CHUNK = 1000;
const ALLOW_JSON_MIN = 4;
/** Transaction-level advisory lock that orders event inserts by commit (see the module comment). */
export const EVENT_LOCK = 0x1d9_0002;
/** The NOTIFY channel of committed changes. */
export const CHANGE_CHANNEL = 'idprov_changes';

/** BIGINT (int8, OID 20) as a JavaScript number: every BIGINT here is a time in seconds or a seq. */
const TYPES = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** Options of {@link PostgresStore.open}. */
export interface PostgresStoreOptions {
  log?: Logger;
  /** Pooled connections (default 8): one at a time writes, the others read. */
  poolSize?: number;
  /** How long a query waits for a pooled connection / a connection attempt, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Client-side limit on one query's answer, ms (default 10000). */
  queryTimeoutMs?: number;
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

/** Counters of a {@link PostgresStore}. */
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

/** A SQLSTATE class that fails one statement and is the caller's fault (22 data, 23 integrity). */
function isCallLocal(e: unknown): boolean {
  if (e instanceof ProvError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/** Connection-level failures: the database is down, restarting or unreachable. */
export function isUnavailable(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  const code = typeof err?.code === 'string' ? err.code : '';
  if (/^(08|57P0[123]|53)/.test(code)) return true;
  if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND'].includes(code)) return true;
  const msg = typeof err?.message === 'string' ? err.message : '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout/i.test(msg);
}

/**
 * A failure as a {@link ProvError}: unique / foreign-key violations are `conflict`; a database that
 * cannot be reached (down, restarting, connection lost) `unavailable` (5.03 with Max-Age to a device);
 * everything else `internal`.
 */
function toProvError(e: unknown, op: string): ProvError {
  if (e instanceof ProvError) return e;
  const err = (e ?? {}) as { code?: string; message?: string };
  const message = err.message ?? String(e);
  const detail: Record<string, unknown> = { op };
  if (err.code !== undefined) detail.sqlstate = err.code;
  if (err.code === '23505' || err.code === '23503') return new ProvError('conflict', `store ${op}: ${message}`, detail);
  if (isUnavailable(e)) return new ProvError('unavailable', `store ${op}: ${message}`, detail);
  return new ProvError('internal', `store ${op}: ${message}`, detail);
}

function closedError(): ProvError {
  return new ProvError('internal', 'the PostgresStore is closed');
}

function clampLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_PAGE;
  return Math.min(MAX_PAGE, Math.max(1, Math.trunc(limit)));
}

function cols(c: readonly string[]): string {
  return c.join(', ');
}

function placeholders(n: number, from = 1): string {
  return Array.from({ length: n }, (_, i) => `$${i + from}`).join(', ');
}

function upsertSql(table: string, key: string, c: readonly string[]): string {
  return (
    `INSERT INTO ${table} (${cols(c)}) VALUES (${placeholders(c.length)}) ON CONFLICT (${key}) DO UPDATE SET ` +
    c.filter((x) => x !== key).map((x) => `${x} = excluded.${x}`).join(', ')
  );
}

/** Re-importing an unchanged entry keeps its consumption (as the SQLite store; see its ALLOW_UPDATE). */
const ALLOW_UPDATE =
  'ON CONFLICT (id) DO UPDATE SET ' +
  ALLOW_COLS.filter((c) => c !== 'id' && c !== 'consumed_at')
    .map((c) => `${c} = excluded.${c}`)
    .concat(
      'consumed_at = CASE WHEN excluded.consumed_at IS NOT NULL THEN excluded.consumed_at ' +
        'WHEN allowlist.pk IS NOT DISTINCT FROM excluded.pk AND allowlist.mac IS NOT DISTINCT FROM excluded.mac ' +
        'AND allowlist.secret IS NOT DISTINCT FROM excluded.secret THEN allowlist.consumed_at ELSE NULL END',
    )
    .join(', ');

const SQL = {
  allowUpsert: `INSERT INTO allowlist (${cols(ALLOW_COLS)}) VALUES (${placeholders(ALLOW_COLS.length)}) ${ALLOW_UPDATE}`,
  // A JSON array of AllowRows: [id, hex pk, hex mac, secret, type, expires, created_at, consumed_at].
  allowUpsertJson:
    `WITH w AS (INSERT INTO allowlist (${cols(ALLOW_COLS)}) ` +
    "SELECT r->>0, decode(r->>1, 'hex'), decode(r->>2, 'hex'), r->>3, (r->>4)::smallint, (r->>5)::bigint, (r->>6)::bigint, (r->>7)::bigint " +
    // One INSERT … ON CONFLICT may not touch a row twice: of a repeated id, the last row wins.
    'FROM (SELECT DISTINCT ON (r->>0) r FROM json_array_elements($1::json) WITH ORDINALITY AS e (r, n) ORDER BY r->>0, n DESC) AS d ' +
    `${ALLOW_UPDATE} RETURNING (xmax = 0) AS added) ` +
    'SELECT count(*)::int AS rows, (count(*) FILTER (WHERE added))::int AS added FROM w',
  allowDelete: 'DELETE FROM allowlist WHERE id = $1',
  allowConsume: 'UPDATE allowlist SET consumed_at = $1 WHERE id = $2 AND consumed_at IS NULL',
  deviceUpsert: upsertSql('devices', 'id', DEVICE_COLS),
  deviceDelete: 'DELETE FROM devices WHERE id = $1',
  pendingUpsert: upsertSql('pending', 'id', PENDING_COLS),
  pendingDelete: 'DELETE FROM pending WHERE id = $1',
  pendingSeen: 'UPDATE pending SET last_seen = $1, count = $2, source = $3 WHERE id = $4',
  revocationPut: upsertSql('revocations', 'id', REVOCATION_COLS),
  revocationDelete: 'DELETE FROM revocations WHERE id = $1',
  keyPut: upsertSql('token_keys', 'kid', KEY_COLS),
  settingPut: upsertSql('settings', 'name', ['name', 'value']),
  eventLock: `SELECT pg_advisory_xact_lock(${EVENT_LOCK})`,
  // Delivered to every listening session when (and only if) the transaction commits.
  notify: `SELECT pg_notify('${CHANGE_CHANNEL}', $1)`,
  eventInsert: 'INSERT INTO events (at, kind, device_id, actor, source, detail) VALUES ($1, $2, $3, $4, $5, $6)',
  flagInsert: `INSERT INTO flags (${cols(FLAG_COLS)}) VALUES (${placeholders(FLAG_COLS.length)}) ON CONFLICT DO NOTHING`,
  flagUpdate: `UPDATE flags SET ${FLAG_COLS.slice(1).map((c, i) => `${c} = $${i + 2}`).join(', ')} WHERE id = $1`,
  flagMerge:
    'UPDATE flags SET last_seen = greatest(last_seen, $3), count = greatest(count, $4) WHERE kind = $1 AND subject = $2 AND cleared_at IS NULL',
  flagDelete: 'DELETE FROM flags WHERE id = $1',
  adminTokenPut: upsertSql('admin_tokens', 'jti', ADMIN_TOKEN_COLS),
  adminTokenRevoke: 'UPDATE admin_tokens SET revoked_at = $1, revoked_by = $2, revoked_reason = $3 WHERE jti = $4 AND revoked_at IS NULL',
  getAdminToken: `SELECT ${cols(ADMIN_TOKEN_COLS)} FROM admin_tokens WHERE jti = $1`,
  listAdminTokens: `SELECT ${cols(ADMIN_TOKEN_COLS)} FROM admin_tokens WHERE jti > $1 ORDER BY jti LIMIT $2`,
  nonceUse: 'INSERT INTO used_nonces (nonce, expires) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING',
  noncesPrune: 'DELETE FROM used_nonces WHERE nonce IN (SELECT nonce FROM used_nonces WHERE expires < $1 ORDER BY expires LIMIT $2)',
  flagsTrim:
    'DELETE FROM flags WHERE id IN (SELECT id FROM flags WHERE cleared_at IS NOT NULL ORDER BY cleared_at, id ' +
    'LIMIT greatest(0, (SELECT count(*) FROM flags) - $1))',
  pendingTrim:
    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE status = 'pending' AND id <> $1 " +
    "ORDER BY last_seen, id LIMIT greatest(0, (SELECT count(*) FROM pending WHERE status = 'pending') - $2))",
  pendingExpire:
    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE status = 'pending' AND last_seen < $1 ORDER BY last_seen, id LIMIT $2)",
  eventsPruneAge:
    'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq < coalesce((SELECT seq FROM events WHERE at >= $1 ORDER BY seq LIMIT 1), ' +
    '9223372036854775807) ORDER BY seq LIMIT $2)',
  // Keeps exactly the newest $1 (seqs may have gaps: a rolled-back insert spends one).
  eventsPruneCap:
    'DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq DESC OFFSET $1 LIMIT 1) ' +
    'ORDER BY seq LIMIT $2)',

  loadSubject:
    'SELECT (SELECT row_to_json(a) FROM allowlist a WHERE a.id = $1) AS a, (SELECT row_to_json(d) FROM devices d WHERE d.id = $1) AS d, ' +
    '(SELECT row_to_json(p) FROM pending p WHERE p.id = $1) AS p, (SELECT row_to_json(r) FROM revocations r WHERE r.id = $1) AS r',
  getAllow: `SELECT ${cols(ALLOW_COLS)} FROM allowlist WHERE id = $1`,
  pskOf: 'SELECT a.secret, a.expires FROM (SELECT $1::text AS id) AS q LEFT JOIN allowlist AS a ON a.id = q.id',
  getDevice: `SELECT ${cols(DEVICE_COLS)} FROM devices WHERE id = $1`,
  getPending: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE id = $1`,
  getRevocation: `SELECT ${cols(REVOCATION_COLS)} FROM revocations WHERE id = $1`,
  listAllow: `SELECT ${cols(ALLOW_COLS)} FROM allowlist WHERE id > $1 ORDER BY id LIMIT $2`,
  listDevices: `SELECT ${cols(DEVICE_COLS)} FROM devices WHERE id > $1 ORDER BY id LIMIT $2`,
  listPending: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE id > $1 ORDER BY id LIMIT $2`,
  listPendingByStatus: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE status = $3 AND id > $1 ORDER BY id LIMIT $2`,
  listRevocations: `SELECT ${cols(REVOCATION_COLS)} FROM revocations WHERE id > $1 ORDER BY id LIMIT $2`,
  listKeys: `SELECT ${cols(KEY_COLS)} FROM token_keys ORDER BY created_at DESC, kid`,
  getSetting: 'SELECT value FROM settings WHERE name = $1',
  heartbeat:
    'INSERT INTO instances (id, name, host, coap_port, coaps_port, admin_port, version, started_at, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ' +
    'ON CONFLICT (id) DO UPDATE SET name = excluded.name, seen_at = excluded.seen_at',
  listInstances: 'SELECT id, name, host, coap_port, coaps_port, admin_port, version, started_at, seen_at FROM instances WHERE seen_at >= $1 ORDER BY name, id',
  leave: 'DELETE FROM instances WHERE id = $1',
  listSettings: 'SELECT name, value FROM settings ORDER BY name',
  listEvents: `SELECT ${cols(EVENT_COLS)} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2`,
  listFlags: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE id > $1 ORDER BY id LIMIT $2`,
  listFlagsOpen: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE cleared_at IS NULL AND id > $1 ORDER BY id LIMIT $2`,
  listFlagsCleared: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE cleared_at IS NOT NULL AND id > $1 ORDER BY id LIMIT $2`,
  getFlag: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE id = $1`,
  macPeers:
    'SELECT id FROM devices WHERE mac = $1 AND id <> $2 UNION SELECT id FROM pending WHERE mac = $1 AND id <> $2 LIMIT $3',
  pendingWaiting: "SELECT count(*)::int AS n FROM pending WHERE status = 'pending'",
  counts:
    'SELECT (SELECT count(*) FROM allowlist)::int AS allowlist, (SELECT count(*) FROM devices)::int AS devices, ' +
    '(SELECT count(*) FROM pending)::int AS pending, (SELECT count(*) FROM revocations)::int AS revocations, ' +
    '(SELECT count(*) FROM token_keys)::int AS keys, (SELECT count(*) FROM events)::int AS events, ' +
    '(SELECT count(*) FROM flags)::int AS flags, (SELECT count(*) FROM admin_tokens)::int AS "adminTokens"',
} as const;

/** `pg`'s Pool, with the types our options use. */
type Pool = InstanceType<typeof pg.Pool>;

/**
 * {@link Store} on PostgreSQL; see the module comment. Create with {@link PostgresStore.open}, close
 * with {@link PostgresStore.close}. Row semantics are the SQLite store's (whole-row upserts,
 * consume-at-most-once, deletes of missing rows succeed, `event` ignores any `seq` given).
 */
export class PostgresStore implements Store {
  readonly stats: PostgresStoreStats = { transactions: 0, commits: 0, calls: 0, failedCalls: 0, largestGroup: 0, migrationsApplied: 0, retries: 0 };
  private queue: QueuedCall[] = [];
  private flushing: Promise<void> | undefined;
  private scheduled = false;
  private closing: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<unknown>>();
  private listener: InstanceType<typeof pg.Client> | undefined;
  /** Tags this store's notifications, so that it ignores its own. */
  readonly instanceId = randomBytes(6).toString('hex');

  private constructor(
    private readonly pool: Pool,
    private readonly url: string,
    private readonly log: Logger | undefined,
  ) {}

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
    const store = new PostgresStore(pool, url, log);
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
  // Writes

  /** Queues `mutations` for the next group transaction; resolves once it committed. */
  apply(mutations: readonly Mutation[]): Promise<void> {
    if (this.closing) return Promise.reject(closedError());
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
      await c.query('BEGIN');
      open = true;
      this.stats.transactions++;
      const state = { eventLock: false };
      // Take the event lock before any row lock: a group that took rows first and then waited for the
      // lock could deadlock with a holder of the lock waiting for those rows (found by the two-instance
      // bench: every provisioning from one address upserts the same many-IDs flag row).
      if (group.some((call) => call.mutations.some((m) => m.kind === 'event'))) {
        await c.query(SQL.eventLock);
        state.eventLock = true;
      }
      const savepoints = group.length > 1;
      let applied = 0;
      for (const call of group) {
        try {
          if (savepoints) await c.query('SAVEPOINT apply_call');
          await this.applyCall(c, call.mutations, state);
          if (savepoints) await c.query('RELEASE apply_call');
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
      await c.query(SQL.notify, [this.notice(kinds)]);
      await c.query('COMMIT');
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
      while (j < ms.length && ms[j].kind === 'allow.upsert') j++;
      if (j - i < ALLOW_JSON_MIN) {
        await this.applyOne(c, ms[i], state);
        i++;
        continue;
      }
      for (let k = i; k < j; k += ALLOW_JSON_CHUNK) {
        const rows = ms.slice(k, Math.min(j, k + ALLOW_JSON_CHUNK)).map((m) => allowRow((m as Extract<Mutation, { kind: 'allow.upsert' }>).entry));
        await c.query(SQL.allowUpsertJson, [JSON.stringify(rows)]);
      }
      i = j;
    }
  }

  private async applyOne(c: PoolClient, m: Mutation, state: { eventLock: boolean }): Promise<void> {
    switch (m.kind) {
      case 'allow.upsert':
        await c.query(SQL.allowUpsert, allowParams(m.entry));
        return;
      case 'allow.delete':
        await c.query(SQL.allowDelete, [m.id]);
        return;
      case 'allow.consume': {
        const r = await c.query(SQL.allowConsume, [m.at, m.id]);
        if (r.rowCount !== 1) throw new ProvError('conflict', 'allowlist entry is missing or already consumed', { id: m.id });
        return;
      }
      case 'device.upsert':
        await c.query(SQL.deviceUpsert, deviceParams(m.device));
        return;
      case 'device.delete':
        await c.query(SQL.deviceDelete, [m.id]);
        return;
      case 'pending.upsert':
        await c.query(SQL.pendingUpsert, pendingParams(m.pending));
        return;
      case 'pending.delete':
        await c.query(SQL.pendingDelete, [m.id]);
        return;
      case 'pending.seen':
        await c.query(SQL.pendingSeen, [m.lastSeen, m.count, m.source, m.id]);
        return;
      case 'revocation.put': {
        const v = m.revocation;
        await c.query(SQL.revocationPut, [v.id, v.at, v.by, opt(v.reason)]);
        return;
      }
      case 'revocation.delete':
        await c.query(SQL.revocationDelete, [m.id]);
        return;
      case 'key.put': {
        const k = m.key;
        await c.query(SQL.keyPut, [k.kid, blob(k.publicKey), blob(k.privateKey), k.createdAt, opt(k.retiredAt)]);
        return;
      }
      case 'setting.put':
        await c.query(SQL.settingPut, [m.name, m.value]);
        return;
      case 'event':
        if (!state.eventLock) {
          // Held until COMMIT: seqs are then handed out in commit order (see the module comment).
          await c.query(SQL.eventLock);
          state.eventLock = true;
        }
        await c.query(SQL.eventInsert, eventParams(m.event));
        return;
      case 'flag.put': {
        // Each instance keeps its own flag book in memory: two may raise "the same" open flag (one per
        // kind and subject, flags_open) under different ids. The second then merges into the first
        // instead of failing the provisioning it rides with.
        const p = flagParams(m.flag);
        if ((await c.query(SQL.flagInsert, p)).rowCount === 1) return;
        if ((await c.query(SQL.flagUpdate, p)).rowCount === 1) return;
        await c.query(SQL.flagMerge, [m.flag.kind, m.flag.subject, m.flag.lastSeen, m.flag.count]);
        return;
      }
      case 'flag.delete':
        await c.query(SQL.flagDelete, [m.id]);
        return;
      case 'flags.trim':
        await c.query(SQL.flagsTrim, [m.max]);
        return;
      case 'admin-token.put':
        await c.query(SQL.adminTokenPut, adminTokenParams(m.token));
        return;
      case 'admin-token.revoke':
        await c.query(SQL.adminTokenRevoke, [m.at, m.by, m.reason, m.jti]);
        return;
      case 'nonce.use': {
        const r = await c.query(SQL.nonceUse, [blob(m.nonce), m.expires]);
        if (r.rowCount !== 1) throw new ProvError('nonce', 'nonce already used');
        return;
      }
      case 'nonces.prune':
        await c.query(SQL.noncesPrune, [m.before, PRUNE_BATCH]);
        return;
      case 'pending.trim': {
        const r = await c.query(SQL.pendingTrim, [m.keep ?? '', m.max]);
        if (m.removed) m.removed.count += r.rowCount ?? 0;
        return;
      }
      case 'pending.expire': {
        const r = await c.query(SQL.pendingExpire, [m.before, PRUNE_BATCH]);
        if (m.removed) m.removed.count += r.rowCount ?? 0;
        return;
      }
      case 'events.prune': {
        const byAge = await c.query(SQL.eventsPruneAge, [m.before, m.limit]);
        const byCap = await c.query(SQL.eventsPruneCap, [m.max, Math.max(0, m.limit - (byAge.rowCount ?? 0))]);
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
   * Upserts every batch of `source` (JSON arrays of AllowRows), then `after`, in one transaction on
   * its own connection: all or nothing. Returns rows written and ids that were new.
   */
  async bulkUpsertAllow(source: AsyncIterable<string>, after: readonly Mutation[] = []): Promise<{ rows: number; added: number }> {
    if (this.closing) throw closedError();
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
          const r = await c.query<{ rows: number; added: number }>(SQL.allowUpsertJson, [batch]);
          result.rows += r.rows[0].rows;
          result.added += r.rows[0].added;
        }
        const state = { eventLock: false };
        for (const m of after) await this.applyOne(c, m, state);
        await c.query(SQL.notify, [this.notice(new Set(['allow.upsert', ...after.map((m) => m.kind)]))]);
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
    this.inflight.add(run);
    try {
      return await run;
    } finally {
      this.inflight.delete(run);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  private async query(op: string, sql: string, params: Param[]): Promise<QueryResult<Row>> {
    if (this.closing) throw closedError();
    const p = this.pool.query<Row>(sql, params);
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
    const [r] = (await this.query('loadSubject', SQL.loadSubject, [id])).rows;
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
    const rows = await this.rows(op, sql, [opts?.after ?? '', limit + 1, ...extra], map);
    const items = rows.slice(0, limit);
    return rows.length > limit ? { items, next: items[items.length - 1].id } : { items };
  }

  listAllow(opts?: ListOptions): Promise<Page<AllowEntry>> {
    return this.page('listAllow', SQL.listAllow, opts, allowFromRow);
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

  async listAdminTokens(opts: { after?: string; limit: number }): Promise<Page<AdminTokenRecord>> {
    const limit = clampLimit(opts.limit);
    const rows = await this.rows('listAdminTokens', SQL.listAdminTokens, [opts.after ?? '', limit + 1], adminTokenFromRow);
    const items = rows.slice(0, limit);
    return rows.length > limit ? { items, next: items[items.length - 1].jti } : { items };
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
      while (this.scheduled || this.flushing || this.queue.length > 0) {
        if (this.flushing) await this.flushing;
        else await new Promise((r) => setImmediate(r));
      }
      await Promise.allSettled([...this.inflight]);
      await this.listener?.end().catch(() => undefined);
      await this.pool.end();
    })();
    return this.closing;
  }
}
