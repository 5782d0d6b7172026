/**
 * The PostgreSQL store's statements, with the tuning constants that go with them.
 */
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

/** Most waiting requests one `pending.expire` deletes. */
export const PRUNE_BATCH = 50_000;
/** Rows per JSON statement of a run of `allow.upsert`s, and the shortest run sent that way. */
export const ALLOW_JSON_CHUNK = 1000;
export const ALLOW_JSON_MIN = 4;
/** Transaction-level advisory lock that orders event inserts by commit (see the module comment). */
export const EVENT_LOCK = 0x1d9_0002;
/** The NOTIFY channel of committed changes. */
export const CHANGE_CHANNEL = 'idprov_changes';

function cols(c: readonly string[]): string {
  return c.join(', ');
}

function placeholders(n: number, from = 1): string {
  return Array.from({ length: n }, (_, i) => `$${i + from}`).join(', ');
}

const ph = (i: number): string => `$${i + 1}`;

export const SQL = {
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
  deviceUpsert: upsertSql('devices', 'id', DEVICE_COLS, ph),
  deviceDelete: 'DELETE FROM devices WHERE id = $1',
  pendingUpsert: upsertSql('pending', 'id', PENDING_COLS, ph),
  pendingDelete: 'DELETE FROM pending WHERE id = $1',
  pendingSeen: 'UPDATE pending SET last_seen = $1, count = $2, source = $3 WHERE id = $4',
  revocationPut: upsertSql('revocations', 'id', REVOCATION_COLS, ph),
  revocationDelete: 'DELETE FROM revocations WHERE id = $1',
  keyPut: upsertSql('token_keys', 'kid', KEY_COLS, ph),
  settingPut: upsertSql('settings', 'name', ['name', 'value'], ph),
  eventLock: `SELECT pg_advisory_xact_lock(${EVENT_LOCK})`,
  // Delivered to every listening session when (and only if) the transaction commits.
  notify: `SELECT pg_notify('${CHANGE_CHANNEL}', $1)`,
  eventInsert: `INSERT INTO events (${cols(EVENT_INSERT_COLS)}) VALUES (${placeholders(EVENT_INSERT_COLS.length)})`,
  eventCopy: `INSERT INTO events (${cols(EVENT_COLS)}) VALUES (${placeholders(EVENT_COLS.length)})`,
  // An explicit seq does not move the identity's sequence: move it past the highest seq.
  eventSeqFollow: "SELECT setval(pg_get_serial_sequence('events', 'seq'), (SELECT max(seq) FROM events))",
  flagInsert: `INSERT INTO flags (${cols(FLAG_COLS)}) VALUES (${placeholders(FLAG_COLS.length)}) ON CONFLICT DO NOTHING`,
  flagUpdate: `UPDATE flags SET ${FLAG_COLS.slice(1).map((c, i) => `${c} = $${i + 2}`).join(', ')} WHERE id = $1`,
  flagMerge:
    'UPDATE flags SET last_seen = greatest(last_seen, $3), count = greatest(count, $4) WHERE kind = $1 AND subject = $2 AND cleared_at IS NULL',
  flagDelete: 'DELETE FROM flags WHERE id = $1',
  adminTokenPut: upsertSql('admin_tokens', 'jti', ADMIN_TOKEN_COLS, ph),
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
  // Matches the partial index allowlist_psk (migration 5), which covers these columns.
  listPsk: 'SELECT id, secret, expires FROM allowlist WHERE secret IS NOT NULL AND id > $1 ORDER BY id LIMIT $2',
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
