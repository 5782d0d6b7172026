/**
 * The SQLite store's prepared statements: every write of the writer connection and every read of the
 * reader connections, with the tuning constants that go with them.
 */
import type { Database, Statement } from 'sqlite3';
import {
  ADMIN_TOKEN_COLS,
  ALLOW_COLS,
  ALLOW_UPDATE,
  DEVICE_COLS,
  EVENT_COLS,
  EVENT_INSERT_COLS,
  FLAG_COLS,
  KEY_COLS,
  PENDING_COLS,
  REVOCATION_COLS,
  upsertSql,
} from '../rows.ts';
import { prepare } from './db.ts';
import { projectSlots } from './rows.ts';

/**
 * Page cache of the writer connection, KiB. Small on purpose: a provisioning touches a few B-tree
 * pages (allowlist leaf, device and event appends) that the OS page cache serves anyway, while a
 * large cache fills as the event log grows and, with allocator fragmentation around it, showed as
 * steady RSS growth over a soak (docs/benchmarks.md, scenario 8). A bulk import raises it to
 * {@link BULK_CACHE_KIB} for its transaction.
 */
export const WRITER_CACHE_KIB = 2048;
export const BULK_CACHE_KIB = 16384;

/**
 * Prepared copies of every read statement per reader connection. node-sqlite3 runs one execution
 * of a Statement at a time and starts the next queued one only from the main thread, after the
 * previous one's result was delivered there: with one copy, reads of one connection advance one
 * per event-loop turn, and when a turn is long (a burst of signature checks) they queue — measured
 * as a p90 of tens of ms for a 0.2 ms lookup at 600 provisionings/s. With several copies, every
 * read issued in a turn is in the thread pool at once (SQLite still runs them one at a time per
 * connection, each in microseconds).
 */
export const READ_STATEMENT_COPIES = 4;

/**
 * Rows per statement of a bulk allowlist upsert. A run of `allow.upsert` mutations (or a batch of a
 * bulk import) is sent as one JSON array per chunk and unpacked by SQLite (`jsonb_each`), which
 * measured cheaper in CPU than binding 8 parameters per row through node-sqlite3, and blocks the
 * event loop ~1 ms per chunk.
 */
export const ALLOW_JSON_CHUNK = 1000;
/** Runs shorter than this use the one-row statement per mutation. */
export const ALLOW_JSON_MIN = 4;
/** Most waiting requests one `pending.expire` deletes (the periodic sweep comes back for the rest). */
export const PRUNE_BATCH = 50_000;

const q = (): string => '?';
const cols = (c: readonly string[]): string => c.join(', ');

export const WRITE_SQL = {
  begin: 'BEGIN IMMEDIATE',
  commit: 'COMMIT',
  rollback: 'ROLLBACK',
  savepoint: 'SAVEPOINT apply_call',
  release: 'RELEASE apply_call',
  rollbackTo: 'ROLLBACK TO apply_call',
  applyBatch: 'INSERT INTO apply_batch (consumes, devices, pending_deletes, pendings, pending_seen, events) VALUES (?, ?, ?, ?, ?, ?)',
  pendingSeen: 'UPDATE pending SET last_seen = ?, count = ?, source = ? WHERE id = ?',
  allowUpsert: `INSERT INTO allowlist (${cols(ALLOW_COLS)}) VALUES (${ALLOW_COLS.map(q).join(', ')}) ${ALLOW_UPDATE}`,
  // Elements are AllowRows ([id, hex pk, hex mac, secret, type, expires, created_at, consumed_at]);
  // `WHERE true` keeps the parser from reading ON CONFLICT as a join constraint.
  allowUpsertJson:
    `INSERT INTO allowlist (${cols(ALLOW_COLS)}) ` +
    'SELECT value->>0, unhex(value->>1), unhex(value->>2), value->>3, value->>4, value->>5, value->>6, value->>7 ' +
    `FROM jsonb_each(?) WHERE true ${ALLOW_UPDATE}`,
  allowDelete: 'DELETE FROM allowlist WHERE id = ?',
  allowConsume: 'UPDATE allowlist SET consumed_at = ? WHERE id = ? AND consumed_at IS NULL',
  deviceUpsert: upsertSql('devices', 'id', DEVICE_COLS, q),
  deviceDelete: 'DELETE FROM devices WHERE id = ?',
  pendingUpsert: upsertSql('pending', 'id', PENDING_COLS, q),
  pendingDelete: 'DELETE FROM pending WHERE id = ?',
  revocationPut: upsertSql('revocations', 'id', REVOCATION_COLS, q),
  revocationDelete: 'DELETE FROM revocations WHERE id = ?',
  keyPut: upsertSql('token_keys', 'kid', KEY_COLS, q),
  settingPut: upsertSql('settings', 'name', ['name', 'value'], q),
  eventInsert: `INSERT INTO events (${cols(EVENT_INSERT_COLS)}) VALUES (${EVENT_INSERT_COLS.map(q).join(', ')})`,
  eventCopy: `INSERT INTO events (${cols(EVENT_COLS)}) VALUES (${EVENT_COLS.map(q).join(', ')})`,
  flagPut: upsertSql('flags', 'id', FLAG_COLS, q),
  flagDelete: 'DELETE FROM flags WHERE id = ?',
  adminTokenPut: upsertSql('admin_tokens', 'jti', ADMIN_TOKEN_COLS, q),
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

export const READ_SQL = {
  loadSubject:
    `SELECT 'a' AS t, ${projectSlots('allow')} FROM allowlist WHERE id = ?1 ` +
    `UNION ALL SELECT 'd', ${projectSlots('device')} FROM devices WHERE id = ?1 ` +
    `UNION ALL SELECT 'p', ${projectSlots('pending')} FROM pending WHERE id = ?1 ` +
    `UNION ALL SELECT 'r', ${projectSlots('revocation')} FROM revocations WHERE id = ?1`,
  getAllow: `SELECT ${cols(ALLOW_COLS)} FROM allowlist WHERE id = ?`,
  // Always exactly one row (NULLs for an unknown id): see Store.pskOf.
  pskOf: 'SELECT a.secret AS secret, a.expires AS expires FROM (SELECT ?1 AS id) AS q LEFT JOIN allowlist AS a ON a.id = q.id',
  getDevice: `SELECT ${cols(DEVICE_COLS)} FROM devices WHERE id = ?`,
  getPending: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE id = ?`,
  getRevocation: `SELECT ${cols(REVOCATION_COLS)} FROM revocations WHERE id = ?`,
  // Keyset pagination: ids are never '' (CHECK), so `id > ''` is "from the start".
  listAllow: `SELECT ${cols(ALLOW_COLS)} FROM allowlist WHERE id > ? ORDER BY id LIMIT ?`,
  // `secret IS NOT NULL` is the condition of the partial index allowlist_psk (migration 5), which
  // holds these three columns: the query reads that index alone.
  listPsk: 'SELECT id, secret, expires FROM allowlist INDEXED BY allowlist_psk WHERE secret IS NOT NULL AND id > ? ORDER BY id LIMIT ?',
  listDevices: `SELECT ${cols(DEVICE_COLS)} FROM devices WHERE id > ? ORDER BY id LIMIT ?`,
  listPending: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE id > ? ORDER BY id LIMIT ?`,
  listPendingByStatus: `SELECT ${cols(PENDING_COLS)} FROM pending WHERE status = ? AND id > ? ORDER BY id LIMIT ?`,
  listRevocations: `SELECT ${cols(REVOCATION_COLS)} FROM revocations WHERE id > ? ORDER BY id LIMIT ?`,
  listKeys: `SELECT ${cols(KEY_COLS)} FROM token_keys ORDER BY created_at DESC, kid`,
  getSetting: 'SELECT value FROM settings WHERE name = ?',
  listSettings: 'SELECT name, value FROM settings ORDER BY name',
  listEvents: `SELECT ${cols(EVENT_COLS)} FROM events WHERE seq > ? ORDER BY seq LIMIT ?`,
  counts:
    'SELECT (SELECT count(*) FROM allowlist) AS allowlist, (SELECT count(*) FROM devices) AS devices, ' +
    '(SELECT count(*) FROM pending) AS pending, (SELECT count(*) FROM revocations) AS revocations, ' +
    '(SELECT count(*) FROM token_keys) AS keys, (SELECT count(*) FROM events) AS events, ' +
    '(SELECT count(*) FROM flags) AS flags, (SELECT count(*) FROM admin_tokens) AS adminTokens',
  getAdminToken: `SELECT ${cols(ADMIN_TOKEN_COLS)} FROM admin_tokens WHERE jti = ?`,
  listAdminTokens: `SELECT ${cols(ADMIN_TOKEN_COLS)} FROM admin_tokens WHERE jti > ? ORDER BY jti LIMIT ?`,
  listFlags: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE id > ? ORDER BY id LIMIT ?`,
  listFlagsOpen: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE cleared_at IS NULL AND id > ? ORDER BY id LIMIT ?`,
  listFlagsCleared: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE cleared_at IS NOT NULL AND id > ? ORDER BY id LIMIT ?`,
  getFlag: `SELECT ${cols(FLAG_COLS)} FROM flags WHERE id = ?`,
  macPeers:
    'SELECT id FROM devices WHERE mac = ?1 AND id <> ?2 UNION SELECT id FROM pending WHERE mac = ?1 AND id <> ?2 LIMIT ?3',
  pendingWaiting: "SELECT n FROM counters WHERE name = 'pending.waiting'",
} as const;

export type WriteStatements = Record<keyof typeof WRITE_SQL, Statement>;
export type ReadStatements = Record<keyof typeof READ_SQL, Statement>;

/** Prepares every statement of `sql`, also recording each in `sink` (to finalize them if open fails). */
export async function prepareAll<K extends string>(
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
